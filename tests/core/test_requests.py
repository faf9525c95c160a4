"""dsr/core/requests.py: the control table and what a request is: created on first use, listed oldest first
and by status, overdue once open past its due date."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from dsr.cli.main import main
from dsr.core import control, intake
from dsr.core.policy import Policy
from dsr.errors import InputError
from tests import lakes


def test_the_control_table_is_created_on_first_use(intake_policy: Policy) -> None:
    assert control.list_requests(intake_policy) == []
    assert lakes.version(intake_policy.requests_uri) is None

    control.submit(intake_policy, "export", "u1")

    assert lakes.version(intake_policy.requests_uri) is not None


# --- listing and overdue --------------------------------------------------------------------------------------


def test_overdue_is_open_past_the_due_date(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1")
    (req,) = control.list_requests(intake_policy)
    late = req.due_at + dt.timedelta(seconds=1)

    assert not req.overdue(req.due_at - dt.timedelta(seconds=1))
    assert req.overdue(late) and req.public(late)["overdue"] is True

    run = control.new_run_id()
    control.claim(intake_policy, run)
    control.complete(intake_policy, run, [{"request_id": rid}])
    (done,) = control.list_requests(intake_policy)
    assert not done.overdue(late)


def test_dsr_requests_marks_overdue_ones(
    intake_policy: Policy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
    monkeypatch.setattr(intake, "utc_now", lambda: long_ago)  # filed 45 days ago
    late, _ = control.submit(intake_policy, "erase", "u1")
    monkeypatch.undo()
    fresh, _ = control.submit(intake_policy, "erase", "u2")

    assert main(["--policy", intake_policy.source, "requests"]) == 0
    text = capsys.readouterr().out
    (late_line,) = [ln for ln in text.splitlines() if late in ln]
    (fresh_line,) = [ln for ln in text.splitlines() if fresh in ln]
    assert late_line.endswith("OVERDUE") and "OVERDUE" not in fresh_line

    assert main(["--policy", intake_policy.source, "requests", "--json"]) == 0
    listed = {r["request_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[late]["overdue"] is True and listed[fresh]["overdue"] is False


def test_requests_filter_by_status_and_refuse_an_unknown_one(intake_policy: Policy) -> None:
    a, _ = control.submit(intake_policy, "erase", "u1")
    b, _ = control.submit(intake_policy, "erase", "u2")
    control.claim(intake_policy, control.new_run_id(), ids=[a])

    assert [r.request_id for r in control.list_requests(intake_policy, status="pending")] == [b]
    assert [r.request_id for r in control.list_requests(intake_policy, status="running")] == [a]
    with pytest.raises(InputError, match="'done'"):
        control.list_requests(intake_policy, status="done")

