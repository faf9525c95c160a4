"""The Airflow notifier of ready exports (dsr/orchestrate/export_notifier.py): attached to finish_exports in
dsr_process, it delivers one message per completed export of the DAG run through a plugged-in channel or the
policy's webhook (a real local HTTP server), records it, and never sends twice on a channel."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.engines.deltars import DeltaRsEngine
from tests.steps.test_delivery import _lake, hook  # noqa: F401 (the webhook server fixture)

pytestmark = pytest.mark.airflow


def test_the_notifier_sends_each_ready_export_once_per_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: Any  # noqa: F811
) -> None:
    from dsr.orchestrate import export_notifier

    url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    lake = _lake(tmp_path, monkeypatch, f"notify: {{webhook: {url}}}\n")
    policy = lake.policy()
    rid, _ = control.submit(policy, "export", "u1", ticket="T-5")
    report = steps.run(policy, DeltaRsEngine(), run_id="af_manual_1")
    assert report.exit_code == 0 and len(hook.received) == 1  # the step told the webhook
    # what Airflow hands a callback: the run's Params and run id (there is no current context: a callback runs
    # after the task, outside it)
    context = {"params": {"policy": str(lake.policy_path)}, "run_id": "manual_1"}

    export_notifier.ExportReadyNotifier().notify(context)
    assert len(hook.received) == 1  # already notified on the webhook: not again

    sent: list[Mapping[str, Any]] = []

    class Desk(export_notifier.ExportReadyNotifier):
        channel = "desk"

        def send(self, message: Mapping[str, Any]) -> None:
            sent.append(message)

    Desk().notify(context)
    Desk().notify(context)
    assert [(m["request_id"], m["ticket"]) for m in sent] == [(rid, "T-5")]
    assert "u1" not in json.dumps(sent)
    channels = [e["details"]["channel"] for e in audit.events(policy, request_id=rid) if e["event"] == "notified"]
    assert channels == ["webhook", "desk"]
    assert export_notifier.callbacks("erase") == {}
    (attached,) = export_notifier.callbacks("finish_exports")["on_success_callback"]
    assert isinstance(attached, export_notifier.ExportReadyNotifier)


def test_dsr_export_notifier_names_the_subclass_finish_exports_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    from dsr.orchestrate import export_notifier
    from tests.orchestrate.notifier import RecordingDesk

    monkeypatch.delenv("DSR_EXPORT_NOTIFIER", raising=False)
    assert type(export_notifier.configured()) is export_notifier.ExportReadyNotifier
    monkeypatch.setenv("DSR_EXPORT_NOTIFIER", "tests.orchestrate.notifier:RecordingDesk")
    (attached,) = export_notifier.callbacks("finish_exports")["on_success_callback"]
    assert type(attached) is RecordingDesk  # a class is built with no arguments
    desk = RecordingDesk()
    monkeypatch.setattr("tests.orchestrate.notifier.DESK", desk, raising=False)
    monkeypatch.setenv("DSR_EXPORT_NOTIFIER", "tests.orchestrate.notifier:DESK")
    assert export_notifier.configured() is desk  # an instance is taken as it is
    for bad in ("no_colon", "tests.orchestrate.notifier:FileNotifier", "os.path:basename"):
        monkeypatch.setenv("DSR_EXPORT_NOTIFIER", bad)
        with pytest.raises(RuntimeError, match="DSR_EXPORT_NOTIFIER"):
            export_notifier.configured()
