"""Export delivery end to end on real parts: packages on moto's S3 server carry server-side encryption on
read-back, ``dsr export-link`` gives a presigned URL that downloads the package over plain HTTP with
``X-Amz-Expires`` equal to the TTL (and the manifest's checksums match), a webhook on a local HTTP server is
told (never the data), and an erasure filed with an export waits for its cool-down (a settable clock)."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.engines.deltars import DeltaRsEngine
from dsr.errors import InputError
from dsr.steps.links import issue_link
from tests import lakes
from tests.invoke import dsr
from tests.packages import members

# --- a real local HTTP server for the webhook ----------------------------------------------------------------


class _Hook(http.server.BaseHTTPRequestHandler):
    """Answers a POST with ``server.status`` (a 3xx with a Location on this server, whose GET answers 200), or,
    with ``server.dribble`` set, with a status line and then one header byte every ``dribble`` seconds until the
    test ends: each read gets a byte well within any per-read timeout, yet the answer never completes."""

    def do_POST(self) -> None:
        server: Any = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.received.append(body)
        if server.dribble:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not server.stop.is_set():
                try:
                    self.wfile.write(b"a")
                    self.wfile.flush()
                except OSError:  # the client hung up: it gave up, as it should
                    return
                server.stop.wait(server.dribble)
            return
        self.send_response(server.status)
        if 300 <= server.status < 400:
            self.send_header("Location", "/elsewhere")
        if server.status != 204:
            self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.server.gets.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@contextmanager
def serving(server: Any, status: int) -> Iterator[Any]:
    """A real webhook server for a test: it records what it receives (``received``, ``gets``), answers
    ``status``, may dribble its answer (``dribble`` seconds a byte); serves in a thread until the block ends."""
    server.received, server.gets, server.status, server.dribble = [], [], status, 0.0
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture()
def hook() -> Iterator[Any]:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook), 204) as server:
        yield server


def _finished_within(seconds: float, work: Callable[[], Any]) -> tuple[bool, Any]:
    """Run ``work`` in a daemon thread; (whether it returned within ``seconds``, its result or exception). A
    thread that hangs is left behind rather than hanging the test."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(work())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), out[0] if out else None


def _lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, exports: str = "./exports") -> lakes.Lake:
    lake = lakes.small(tmp_path / "w")
    text = lake.policy_path.read_text(encoding="utf-8").replace("exports: ./exports", f"exports: {exports}")
    lake.policy_path.write_text(text + extra, encoding="utf-8")
    return lake.use(monkeypatch)


def _events(policy: Any, rid: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in audit.events(policy, request_id=rid) if e["event"] == kind]


# --- S3: SSE on read-back, presigned links, the webhook with a link ------------------------------------------


@pytest.mark.s3
@pytest.mark.parametrize("sse", ["AES256", "aws:kms"])
def test_s3_packages_are_encrypted_linked_and_announced(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: Any, sse: str
) -> None:
    import boto3

    kms = "exports_kms_key_id: alias/dsr-exports\n" if sse == "aws:kms" else ""
    url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    lake = _lake(tmp_path, monkeypatch, f"exports_sse: {sse}\n{kms}notify: {{webhook: {url}, link: true}}\n",
                 exports=f"s3://exp/{sse.replace(':', '-')}")
    policy = lake.policy()
    rid, _ = control.submit(policy, "export", "u1", ticket="T-9", export_format="csv")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    req = control.list_requests(policy, ids=[rid])[0]
    assert req.export_uri == f"s3://exp/{sse.replace(':', '-')}/{rid}.zip"

    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    bucket, key = req.export_uri[5:].split("/", 1)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == sse
    if sse == "aws:kms":
        assert head["SSEKMSKeyId"].endswith("alias/dsr-exports")

    out = dsr("export-link", rid, "--ttl", "2h", "--for", "support desk", "--json")
    assert out.returncode == 0, out.stderr
    link = json.loads(out.stdout)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link["url"]).query)
    assert query["X-Amz-Expires"] == ["7200"] and link["ttl_seconds"] == 7200
    with urllib.request.urlopen(link["url"], timeout=10) as resp:  # plain HTTP to the S3 server
        data = resp.read()
    files = members(data)
    manifest = json.loads(files["manifest.json"])
    assert {f["name"] for f in manifest["files"]} == {"README.txt", "events.csv", "users.csv", "consents.csv"}
    for f in manifest["files"]:
        assert hashlib.sha256(files[f["name"]]).hexdigest() == f["sha256"] and len(files[f["name"]]) == f["size"]
    issued = _events(policy, rid, "export_link_issued")
    assert [e["details"]["for"] for e in issued] == ["notification", "support desk"]
    signature = query["X-Amz-Signature"][0]
    assert signature not in json.dumps([e["details"] for e in audit.events(policy)], default=str)

    (body,) = hook.received  # the run's webhook: no data, a link that works
    note = json.loads(body)
    assert note["request_id"] == rid and note["ticket"] == "T-9" and note["format"] == "csv"
    assert note["expires_at"] == manifest["expires_at"].replace("Z", "+00:00")
    assert b"u1" not in body and b"@example" not in body
    with urllib.request.urlopen(note["link"], timeout=10) as resp:
        assert resp.read() == data
    assert [e["details"]["channel"] for e in _events(policy, rid, "notified")] == ["webhook"]

    too_long = dsr("export-link", rid, "--ttl", "8d")
    assert too_long.returncode == 2 and too_long.stdout == ""
    assert too_long.stderr.strip().splitlines() == ["dsr: error: --ttl: a link lasts at most 7 days (7d)"]
    with pytest.raises(InputError, match="has expired"):  # a package past export_ttl_days gets no link
        issue_link(policy, rid, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=31))
    assert len(_events(policy, rid, "export_link_issued")) == 2  # nothing recorded for bad input


def test_links_need_an_s3_exports_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _lake(tmp_path, monkeypatch, "")
    policy = lake.policy()
    rid, _ = control.submit(policy, "export", "u1")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    out = dsr("export-link", rid)
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("dsr: error: links need an S3 exports location")
    assert _events(policy, rid, "export_link_issued") == []


# --- the webhook: told once, never the data; failures retried and recorded, never failing the export ------------


def test_a_failing_webhook_is_retried_recorded_and_never_fails_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: Any
) -> None:
    hook.status = 503
    url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    lake = _lake(tmp_path, monkeypatch, f"notify: {{webhook: {url}, attempts: 2}}\n")
    policy = lake.policy()
    rid, _ = control.submit(policy, "export", "u2", ticket="T-2")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    assert control.list_requests(policy, ids=[rid])[0].status == "completed"
    assert len(hook.received) == 2 and all(b"u2" not in b for b in hook.received)
    (failed,) = _events(policy, rid, "notify_failed")
    assert failed["details"]["attempts"] == 2 and failed["details"]["error"] == "HTTP 503"

    hook.status = 200  # the Airflow notifier's path: the same call again delivers once, then never twice
    assert steps.notify.packages_ready(policy, [rid]) == {rid: True}
    assert steps.notify.packages_ready(policy, [rid]) == {}
    assert len(hook.received) == 3 and json.loads(hook.received[-1])["ticket"] == "T-2"


def test_a_redirect_is_a_failure_never_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: Any) -> None:
    hook.status = 302  # following it would re-send the POST as a GET without the body, and "succeed"
    url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    lake = _lake(tmp_path, monkeypatch, f"notify: {{webhook: {url}, attempts: 2}}\n")
    policy = lake.policy()
    rid, _ = control.submit(policy, "export", "u2", ticket="T-3")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    assert control.list_requests(policy, ids=[rid])[0].status == "completed"
    assert len(hook.received) == 2 and hook.gets == []  # retried like any failure; the Location never asked
    assert _events(policy, rid, "notified") == []
    (failed,) = _events(policy, rid, "notify_failed")
    details = failed["details"]
    assert (details["attempts"], details["status"]) == (2, 302)
    assert details["error"] == "HTTP 302: redirects are not followed"
    assert "u2" not in json.dumps(details)


def test_a_webhook_that_answers_a_byte_at_a_time_is_cut_off_at_one_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: Any
) -> None:
    hook.dribble = 0.25  # a byte every 0.25 s: never a read that waits timeout_seconds
    url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
    lake = _lake(tmp_path, monkeypatch, f"notify: {{webhook: {url}, attempts: 2, timeout_seconds: 1}}\n")
    policy = lake.policy()
    rid, _ = control.submit(policy, "export", "u1", ticket="T-4")
    erase_id, _ = control.submit(policy, "erase", "u2")

    # one delivery attempt: given up at its deadline (1 s), proved with a generous bound (3x)
    done, result = _finished_within(3.0, lambda: steps.webhook.post_json(url, {"event": "probe"}, 1.0))
    assert done, "post_json still waiting for the answer after 3x its timeout"
    assert isinstance(result, TimeoutError), result

    # the run: the export completes (its notification failed and is recorded), the erasure is not held up
    done, report = _finished_within(120.0, lambda: steps.run(policy, DeltaRsEngine()))
    assert done, "dsr run hangs on a webhook that answers slowly"
    assert report.exit_code == 0
    assert {r.request_id: r.status for r in control.list_requests(policy)} == {rid: "completed",
                                                                               erase_id: "completed"}
    (failed,) = _events(policy, rid, "notify_failed")
    assert failed["details"]["attempts"] == 2
    assert failed["details"]["error"] == "TimeoutError: no complete answer within 1 s"


# --- the cool-down: an erasure filed with an export waits until completed_at + erase_cooldown_days ---------------


def test_an_erasure_filed_with_an_export_waits_for_the_cool_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = _lake(tmp_path, monkeypatch, "erase_cooldown_days: 3\n")
    policy = lake.policy()
    export_id, _ = control.submit(policy, "export", "u1")
    erase_id, _ = control.submit(policy, "erase", "u1")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    export, erase = control.list_requests(policy, ids=[export_id, erase_id])
    assert (export.status, erase.status) == ("completed", "pending")
    proceeds = export.updated_at + dt.timedelta(days=3)

    listed = {r["request_id"]: r for r in json.loads(dsr("requests", "--json").stdout)}
    assert dt.datetime.fromisoformat(listed[erase_id]["proceeds_at"]) == proceeds
    assert f"proceeds {proceeds:%Y-%m-%d %H:%M} UTC" in dsr("requests").stdout

    early = steps.run(policy, DeltaRsEngine(), now=proceeds - dt.timedelta(minutes=1))
    assert early.claimed["requests"] == 0 and early.claimed["cooling_down"] == 1
    assert control.list_requests(policy, ids=[erase_id])[0].status == "pending"
    assert [r for r in lakes.rows(lake.lake / "events") if r["user_id"] == "u1"] != []  # still there

    later = steps.run(policy, DeltaRsEngine(), now=proceeds + dt.timedelta(minutes=1))
    assert later.exit_code == 0 and later.claimed["erasures"] == 1
    assert control.list_requests(policy, ids=[erase_id])[0].status == "completed"
    assert [r for r in lakes.rows(lake.lake / "events") if r["user_id"] == "u1"] == []
