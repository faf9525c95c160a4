"""``dsr.orchestrate.alerts``: how ``DSR_ON_FAILURE`` names the notifier, and the lines ``check_deadlines`` logs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dsr.core.policy import load_policy
from dsr.core.requests import Request
from dsr.orchestrate import alerts
from dsr.steps.status import summarise
from tests import lakes

pytestmark = pytest.mark.airflow

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def test_the_notifier_is_a_logging_one_unless_dsr_on_failure_names_another(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import BaseNotifier

    monkeypatch.delenv("DSR_ON_FAILURE", raising=False)
    default = alerts.on_failure()
    assert isinstance(default, BaseNotifier) and type(default).__name__ == "LogNotifier"
    monkeypatch.setenv("DSR_ON_FAILURE", "tests.orchestrate.notifier:FileNotifier")
    assert type(alerts.on_failure()).__name__ == "FileNotifier"  # a class is built with no arguments
    monkeypatch.setenv("DSR_ON_FAILURE", "os.path:basename")
    assert alerts.on_failure() is __import__("os.path").path.basename  # any callable is taken as it is
    for bad in ("no_colon", "os.path:sep"):
        monkeypatch.setenv("DSR_ON_FAILURE", bad)
        with pytest.raises(RuntimeError, match="DSR_ON_FAILURE"):
            alerts.on_failure()


def test_deadline_lines_name_request_ids_and_reasons_once_each(tmp_path: Path) -> None:
    policy = load_policy(lakes.write_policy(tmp_path, lakes.SMALL_POLICY))

    def req(rid: str, status: str, due_in: float, attempts: int, error: str | None) -> Request:
        due = NOW + dt.timedelta(days=due_in)
        return Request(rid, "erase", "not-looked-at", status, None, None, due - dt.timedelta(days=30), due, due,
                       attempts, None, None, error, None, None)

    s = summarise(policy, [req("req_late", "failed", -2, 3, "table 'events': refused"),
                           req("req_soon", "pending", 3, 0, None), req("req_fine", "pending", 20, 0, None)],
                  [], NOW, soon_days=7)
    lines = alerts.deadline_problems(s)
    assert lines == [
        f"req_late (erase, failed): overdue since {(NOW - dt.timedelta(days=2)):%Y-%m-%dT%H:%M} UTC; "
        "last error: table 'events': refused",
        f"req_soon (erase, pending): due {(NOW + dt.timedelta(days=3)):%Y-%m-%dT%H:%M} UTC, within 7 day(s)",
    ]
