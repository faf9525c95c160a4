"""dsr/steps/verify.py: no erasure ends "completed" while the person's rows survive.

Rows appended between the erase commit and verification fail the request, and the next attempt erases them:
a deterministic injection, and a real concurrent writer process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.cli.receipt import build_receipt
from dsr.core import audit, control
from dsr.core.policy import Policy
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests.steps.conftest import events_table


def test_rows_appended_after_the_erase_commit_fail_the_request_and_the_retry_erases_them(
    small: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = small.table("events").uri
    rid = control.submit(small, "erase", "anna")[0]
    engine = DeltaRsEngine()
    real_erase = engine.erase

    def erase_then_ingest(plan: Any, source: Any) -> Any:
        result = real_erase(plan, source)
        lakes.write_table(uri, events_table(["anna", "anna", "carl"], start=100))  # a late ingestion
        return result

    monkeypatch.setattr(engine, "erase", erase_then_ingest)
    first = steps.run(small, engine)
    req = control.list_requests(small, ids=[rid])[0]
    assert first.exit_code == 1 and req.status == "failed" and "verification failed" in (req.error or "")
    assert [r["user_id"] for r in lakes.rows(uri)].count("anna") == 2

    monkeypatch.setattr(engine, "erase", real_erase)
    second = steps.run(small, engine)
    assert second.exit_code == 0, second.as_dict()
    assert control.list_requests(small, ids=[rid])[0].status == "completed"
    users = [r["user_id"] for r in lakes.rows(uri)]
    assert "anna" not in users and users.count("carl") == 1 and users.count("bob") == 2
    erased = [e for e in audit.events(small, request_id=rid) if e["event"] == "table_erased"]
    assert [e["details"]["rows"] for e in erased] == [2, 2] and erased[1]["details"]["repeat"] is True
    entry = build_receipt(small, rid)["tables"]["events"]
    assert entry["rows"] == 4 and entry["commits"] == 2 and entry["ge_success"] is True


WRITER = textwrap.dedent("""
    import random, sys, time
    import pyarrow as pa
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError
    uri, stop, subject = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = random.Random(7)
    n = 0
    deadline = time.time() + 60
    import os
    while not os.path.exists(stop) and time.time() < deadline:
        ids = [subject, "zed", subject]
        try:
            write_deltalake(uri, pa.table({"event_id": pa.array(range(10_000 + n, 10_003 + n), pa.int64()),
                                           "user_id": pa.array(ids, pa.string())}), mode="append")
            n += 3
        except CommitFailedError:
            pass
        time.sleep(rng.uniform(0.05, 0.2))
    print(n, flush=True)
""")


@pytest.mark.slow
def test_a_concurrent_writer_never_leaves_a_completed_erasure_with_the_persons_rows(
    small: Policy, tmp_path: Path
) -> None:
    """A real ingestion process appends rows of the erased subject every 50-200 ms while dsr runs. Whatever the
    interleaving: no request is completed while verification saw the person, and once the writer stops, the
    request converges within its attempts and the person is gone."""
    uri = small.table("events").uri
    rid = control.submit(small, "erase", "bob")[0]
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, uri, str(stop), "bob"], stdout=subprocess.PIPE,
                              text=True)
    try:
        time.sleep(0.3)
        outcomes = [steps.run(small, DeltaRsEngine()).exit_code for _ in range(2)]
    finally:
        stop.touch()
        appended = int((writer.communicate(timeout=60)[0] or "0").strip() or 0)
    assert appended > 0
    for _ in range(4):
        req = control.list_requests(small, ids=[rid])[0]
        if not control.is_open(req, small):
            break
        outcomes.append(steps.run(small, DeltaRsEngine()).exit_code)
    req = control.list_requests(small, ids=[rid])[0]
    assert req.status == "completed", (outcomes, req.error, req.attempts)
    # every verification that passed saw no row of bob at the version it read
    for e in audit.events(small, request_id=rid):
        if e["event"] == "verified" and e["details"]["success"]:
            version = int(e["details"]["version"])
            assert "bob" not in [r["user_id"] for r in lakes.rows(uri, version)]
    # the writer has stopped: the completing run erased everything it appended before
    final = max(int(e["details"]["version"]) for e in audit.events(small, request_id=rid)
                if e["event"] == "verified")
    assert final >= max(e["details"]["version_after"] for e in audit.events(small, request_id=rid)
                        if e["event"] == "table_erased")
    rows = lakes.rows(uri)
    assert [r["user_id"] for r in rows].count("zed") == appended // 3
