"""dsr/core/audit.py: appending to and reading the hash-chained audit log on Delta, and verifying it (also while
others append, and after compaction)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dsr.core import audit
from dsr.core.policy import Policy
from tests import lakes
from tests.core.conftest import anchor_files, fill_audit, start_together, verify_cli


def test_an_empty_log_verifies(intake_policy: Policy) -> None:
    assert audit.verify_chain(intake_policy) == (0, None)
    assert audit.append(intake_policy, []) == []
    assert lakes.version(intake_policy.audit_uri) is None


def test_an_intact_chain_verifies(intake_policy: Policy, capsys: pytest.CaptureFixture[str]) -> None:
    rows = fill_audit(intake_policy)

    assert [r["seq"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert audit.verify_chain(intake_policy) == (6, None)
    code, out = verify_cli(intake_policy, capsys)
    assert code == 0 and out.strip() == "audit chain OK: 6 event(s)"


def test_events_keep_their_details_table_and_run(intake_policy: Policy) -> None:
    rows = fill_audit(intake_policy)

    erased = audit.events(intake_policy, request_id="req_a")
    assert [e["event"] for e in erased] == ["received", "claimed", "table_erased", "completed"]
    assert erased[2]["table_name"] == "events" and erased[2]["run_id"] == "run_1"
    assert erased[2]["details"] == {"rows": 3, "version_before": 4, "version_after": 5}
    assert rows[-1]["details"] == {}


def test_an_unknown_event_is_refused_and_nothing_is_written(intake_policy: Policy) -> None:
    fill_audit(intake_policy)
    version = lakes.version(intake_policy.audit_uri)

    with pytest.raises(ValueError, match="'deleted_everything'"):
        audit.append(intake_policy, [audit.AuditEvent("completed"), audit.AuditEvent("deleted_everything")])

    assert lakes.version(intake_policy.audit_uri) == version


def test_concurrent_appenders_keep_one_unbroken_chain(intake_policy: Policy) -> None:
    audit.append(intake_policy, [audit.AuditEvent("received", request_id="req_0")])
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(4):
                audit.append(intake_policy, [audit.AuditEvent("claimed", request_id=f"req_{name}{i}", run_id=name)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    assert audit.verify_chain(intake_policy) == (9, None)
    assert sorted(r["seq"] for r in lakes.rows(intake_policy.audit_uri)) == list(range(9))


def test_compacting_the_audit_table_keeps_the_chain_intact(intake_policy: Policy) -> None:
    from dsr.delta import tables as deltautil

    for i in range(12):
        audit.append(intake_policy, [audit.AuditEvent("received", request_id=f"req_{i}")])
    assert deltautil.compact_small_files(intake_policy.audit_uri, max_files=4) >= 12
    n, broken = audit.verify_chain(intake_policy)
    assert broken is None and n == 12
    assert deltautil.compact_small_files(intake_policy.audit_uri, max_files=4) == 0


_APPENDER = """
import os, sys, time
from dsr.core import audit
from dsr.core.policy import load_policy

policy_path, me, go, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
policy = load_policy(policy_path)
open(go + "." + me + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(n):
    audit.append(policy, [audit.AuditEvent("claimed", request_id=f"req_{me}{i}", run_id="run_" + me)])
"""


def test_appenders_in_parallel_processes_never_make_verify_report_a_break(
    intake_policy: Policy, tmp_path: Path
) -> None:
    """Two processes append at once while this one verifies over and over: no break, ever."""
    audit.append(intake_policy, [audit.AuditEvent("received", request_id="req_0")])
    go, per_writer = str(tmp_path / "go"), 10
    procs = start_together(_APPENDER, go, intake_policy.source, str(per_writer))  # both append at once

    seen: list[tuple[int, audit.ChainBreak | None]] = []
    deadline = time.monotonic() + 120
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        seen.append(audit.verify_chain(intake_policy))
    outs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], outs
    assert seen and [s for s in seen if s[1] is not None] == []
    assert audit.verify_chain(intake_policy) == (1 + 2 * per_writer, None)
    assert anchor_files(intake_policy)[-1].name == f"{lakes.version(intake_policy.audit_uri):020d}.json"
