"""The notifier of ready exports in one real ``airflow dags test dsr_process``: ``finish_exports``' success
callback is a deployment's ``ExportReadyNotifier`` subclass named by ``DSR_EXPORT_NOTIFIER``
(``tests.orchestrate.notifier:RecordingDesk``, which writes each message its ``send`` gets to a file), beside
the policy's webhook on a real local HTTP server.

The callback runs after the task, outside its execution context: it must take the policy and the batch from
the context Airflow hands it. Asserted: the subclass got one message per export of the run (request id, ticket,
expiry, format; nothing else, no subject id), the webhook one each too (never twice), the audit log records
both channels, and Airflow's output has no notification failure and no subject id.

Airflow runs in a subprocess on a throw-away AIRFLOW_HOME (SQLite); the DAG folder holds dsr_process only.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dsr.core import audit, control
from dsr.core.policy import load_policy
from tests import lakes
from tests.invoke import dsr
from tests.leaks import Leaks
from tests.orchestrate.airflow_cli import airflow
from tests.packages import manifest

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXPORT = {"1003": "T-31", "1005": "T-32"}  # subject -> ticket
ERASE = ("1007",)
MESSAGE_KEYS = {"event", "request_id", "ticket", "expires_at", "format"}


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.server.received.append(self.rfile.read(int(self.headers["Content-Length"])))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@dataclass
class Ran:
    lake: lakes.Lake
    export_ids: dict[str, str]  # request id -> ticket
    output: str
    returncode: int
    sent: list[dict[str, Any]]  # what RecordingDesk.send got
    webhook: list[dict[str, Any]]  # what the webhook got


@pytest.fixture(scope="module")
def hook() -> Iterator[Any]:
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, hook: Any) -> Ran:
    root = tmp_path_factory.mktemp("export_notifier")
    lake = lakes.busy(root / "w")
    url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    lake.policy_path.write_text(lake.policy_path.read_text() + f"notify: {{webhook: '{url}'}}\n")
    export_ids = {}
    for subject, ticket in EXPORT.items():
        out = dsr("request", "export", subject, "--ticket", ticket, env=lake.env)
        assert out.returncode == 0, out.stderr
        export_ids[out.stdout.strip()] = ticket
    for subject in ERASE:
        assert dsr("request", "erase", subject, env=lake.env).returncode == 0
    dags = root / "dags"
    dags.mkdir()
    (dags / "dsr_process.py").symlink_to(ROOT / "dags" / "dsr_process.py")
    home, sent = root / "airflow_home", root / "sent.jsonl"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DSR_", "SPARK_REMOTE"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "DSR_ENGINE": "delta-rs", "DSR_SCHEDULE": "none",
        "DSR_EXPORT_NOTIFIER": "tests.orchestrate.notifier:RecordingDesk", "DSR_TEST_EXPORTS": str(sent),
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        **lake.env,
    })
    migrate = airflow(["db", "migrate"], env, timeout=180)
    assert migrate.returncode == 0, (migrate.stdout + migrate.stderr)[-3000:]
    test = airflow(["dags", "test", "dsr_process"], env, timeout=400)
    lines = sent.read_text(encoding="utf-8").splitlines() if sent.exists() else []
    return Ran(lake, export_ids, test.stdout + test.stderr, test.returncode, [json.loads(ln) for ln in lines],
               [json.loads(b) for b in hook.received])


def test_the_run_completes_every_request_and_no_notification_fails(ran: Ran) -> None:
    assert ran.returncode == 0, ran.output[-5000:]
    requests = control.list_requests(load_policy(ran.lake.policy_path))
    assert {r.status for r in requests} == {"completed"} and len(requests) == len(EXPORT) + len(ERASE)
    assert "Failed to send notification" not in ran.output, ran.output[-5000:]
    assert "no context was found" not in ran.output


def test_the_subclass_gets_one_message_per_export_with_its_ticket_and_expiry(ran: Ran) -> None:
    assert sorted((m["request_id"], m["ticket"]) for m in ran.sent) == sorted(ran.export_ids.items()), ran.sent
    policy = load_policy(ran.lake.policy_path)
    completed = {r.request_id: r for r in control.list_requests(policy, ids=list(ran.export_ids))}
    for m in ran.sent:
        assert set(m) == MESSAGE_KEYS and (m["event"], m["format"]) == ("export_ready", "json")
        package = manifest(str(completed[m["request_id"]].export_uri))  # the expiry the package itself states
        assert dt.datetime.fromisoformat(m["expires_at"]) == dt.datetime.fromisoformat(package["expires_at"])
    webhook = {m["request_id"]: m for m in ran.webhook}  # the step's own delivery says the same, once each
    assert len(ran.webhook) == len(ran.export_ids) and webhook == {m["request_id"]: m for m in ran.sent}


def test_the_audit_log_records_both_channels_once_each(ran: Ran) -> None:
    policy = load_policy(ran.lake.policy_path)
    for rid in ran.export_ids:
        events = audit.events(policy, request_id=rid)
        assert sorted(e["details"]["channel"] for e in events if e["event"] == "notified") == [
            "recording-desk", "webhook"]
        assert [e for e in events if e["event"] == "notify_failed"] == []


def test_no_subject_id_reaches_the_subclass_the_webhook_or_airflows_output(ran: Ran) -> None:
    leaks = Leaks([*EXPORT, *ERASE])
    assert not leaks.found_in(json.dumps(ran.sent)) and not leaks.found_in(json.dumps(ran.webhook))
    assert not leaks.found_in(ran.output)
