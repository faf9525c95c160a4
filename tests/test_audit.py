"""dsr/audit.py: an append-only hash chain on Delta; any row altered, removed or reordered is caught."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dsr.cli.main import main
from dsr.core import audit
from dsr.core.policy import Policy
from tests.helpers import delta_version, read_rows
from tests.test_s3 import s3_endpoint, s3_env  # noqa: F401  (the moto server fixtures)


def _fill(policy: Policy) -> list[dict[str, Any]]:
    """Six events over four commits; returns the rows in chain order."""
    audit.append(policy, [audit.AuditEvent("received", request_id="req_a", details={"kind": "erase"})])
    audit.append(policy, [audit.AuditEvent("received", request_id="req_b", details={"kind": "export"})])
    audit.append(policy, [
        audit.AuditEvent("claimed", request_id="req_a", run_id="run_1", details={"attempt": 1}),
        audit.AuditEvent("claimed", request_id="req_b", run_id="run_1", details={"attempt": 1}),
    ])
    audit.append(policy, [
        audit.AuditEvent("table_erased", request_id="req_a", run_id="run_1", table_name="events",
                         details={"rows": 3, "version_before": 4, "version_after": 5}),
        audit.AuditEvent("completed", request_id="req_a", run_id="run_1"),
    ])
    return audit.events(policy)


def _rewrite(policy: Policy, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Tamper the way someone with write access would: overwrite the table with an edited copy."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from dsr.delta import tables as deltautil

    data = deltautil.read_all(DeltaTable(policy.audit_uri))
    rows = sorted(data.to_pylist(), key=lambda r: r["seq"])
    write_deltalake(policy.audit_uri, pa.Table.from_pylist(edit(rows), schema=data.schema), mode="overwrite")


def _verify_cli(policy: Policy, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--policy", policy.source, "audit", "verify"])
    return code, capsys.readouterr().out


def test_an_empty_log_verifies(intake_policy: Policy) -> None:
    assert audit.verify_chain(intake_policy) == (0, None)
    assert audit.append(intake_policy, []) == []
    assert delta_version(intake_policy.audit_uri) is None


def test_an_intact_chain_verifies(intake_policy: Policy, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _fill(intake_policy)

    assert [r["seq"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert audit.verify_chain(intake_policy) == (6, None)
    code, out = _verify_cli(intake_policy, capsys)
    assert code == 0 and out.strip() == "audit chain OK: 6 event(s)"


def test_each_hash_covers_the_previous_hash_and_the_canonical_event(intake_policy: Policy) -> None:
    rows = _fill(intake_policy)

    stored = {r["seq"]: r for r in read_rows(intake_policy.audit_uri)}
    prev = audit.GENESIS
    for row in rows:
        raw = stored[row["seq"]]
        assert raw["prev_hash"] == prev
        assert raw["hash"] == hashlib.sha256((prev + "\n" + audit.canonical(raw)).encode()).hexdigest()
        prev = raw["hash"]


def test_events_keep_their_details_table_and_run(intake_policy: Policy) -> None:
    rows = _fill(intake_policy)

    erased = audit.events(intake_policy, request_id="req_a")
    assert [e["event"] for e in erased] == ["received", "claimed", "table_erased", "completed"]
    assert erased[2]["table_name"] == "events" and erased[2]["run_id"] == "run_1"
    assert erased[2]["details"] == {"rows": 3, "version_before": 4, "version_after": 5}
    assert rows[-1]["details"] == {}


def test_an_unknown_event_is_refused_and_nothing_is_written(intake_policy: Policy) -> None:
    _fill(intake_policy)
    version = delta_version(intake_policy.audit_uri)

    with pytest.raises(ValueError, match="'deleted_everything'"):
        audit.append(intake_policy, [audit.AuditEvent("completed"), audit.AuditEvent("deleted_everything")])

    assert delta_version(intake_policy.audit_uri) == version


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
    assert sorted(r["seq"] for r in read_rows(intake_policy.audit_uri)) == list(range(9))


# --- tampering: edit the Delta table underneath ---------------------------------------------------------------


def _alter_details(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[3]["details"] = rows[3]["details"].replace('"attempt":1', '"attempt":7')
    return rows


def _alter_table_name(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[4]["table_name"] = "orders"
    return rows


def _remove_one(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows[:2] + rows[3:]


def _swap_seq(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[2]["seq"], rows[3]["seq"] = rows[3]["seq"], rows[2]["seq"]
    return rows


def _move_to_the_end(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reorder: event 1 goes last, every seq renumbered so the sequence looks whole."""
    moved = rows[:1] + rows[2:] + rows[1:2]
    for i, r in enumerate(moved):
        r["seq"] = i
    return moved


def _remove_the_last(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows[:-1]


def _forge_a_new_last_event(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An event appended outside dsr, with a correctly computed hash."""
    last = rows[-1]
    forged = {**last, "seq": last["seq"] + 1, "event_id": "f" * 32, "event": "completed", "request_id": "req_b",
              "table_name": None, "details": "{}", "prev_hash": last["hash"]}
    forged["hash"] = hashlib.sha256((last["hash"] + "\n" + audit.canonical(forged)).encode()).hexdigest()
    return [*rows, forged]


@pytest.mark.parametrize(
    ("edit", "bad_seq", "intact", "why"),
    [
        (_alter_details, 3, 3, "content altered"),
        (_alter_table_name, 4, 4, "content altered"),
        (_remove_one, 3, 2, "missing event before it"),
        (_swap_seq, 2, 2, "previous-hash link broken"),
        (_move_to_the_end, 1, 1, "previous-hash link broken"),
        (_remove_the_last, 5, 5, "removed from the end"),
        (_forge_a_new_last_event, 6, 6, "appended outside dsr"),
    ],
    ids=["row-altered", "table-name-altered", "row-removed", "rows-reordered-by-seq", "row-moved-to-the-end",
         "last-row-removed", "row-forged-at-the-end"],
)
def test_tampering_is_caught_at_the_first_bad_event(
    intake_policy: Policy,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    bad_seq: int,
    intact: int,
    why: str,
) -> None:
    _fill(intake_policy)
    _rewrite(intake_policy, edit)

    n, brk = audit.verify_chain(intake_policy)

    assert brk is not None and brk.seq == bad_seq and why in brk.why
    assert n == intact
    by_seq = {r["seq"]: r["event_id"] for r in read_rows(intake_policy.audit_uri)}
    assert brk.event_id == by_seq.get(bad_seq, "(missing)")
    code, out = _verify_cli(intake_policy, capsys)
    assert code == 1
    assert f"BROKEN at event seq {bad_seq} (event_id {brk.event_id})" in out and why in out


def test_compacting_the_audit_table_keeps_the_chain_intact(intake_policy: Policy) -> None:
    from dsr.delta import tables as deltautil

    for i in range(12):
        audit.append(intake_policy, [audit.AuditEvent("received", request_id=f"req_{i}")])
    assert deltautil.compact_small_files(intake_policy.audit_uri, max_files=4) >= 12
    n, broken = audit.verify_chain(intake_policy)
    assert broken is None and n == 12
    assert deltautil.compact_small_files(intake_policy.audit_uri, max_files=4) == 0


# --- the anchor outside the audit table: removing the newest commits ---------------------------------------------


def _log_file(policy: Policy, version: int) -> Path:
    return Path(policy.audit_uri) / "_delta_log" / f"{version:020d}.json"


def _anchor_files(policy: Policy) -> list[Path]:
    return sorted(Path(audit.anchor_uri(policy)).glob("*.json"))


def _append_each(policy: Policy, n: int, *, prefix: str = "req_") -> None:
    for i in range(n):
        audit.append(policy, [audit.AuditEvent("received", request_id=f"{prefix}{i}")])


def test_each_append_anchors_the_chain_end_outside_the_table(intake_policy: Policy) -> None:
    from deltalake import DeltaTable

    _append_each(intake_policy, 12)

    anchor_dir = Path(audit.anchor_uri(intake_policy))
    assert anchor_dir == Path(intake_policy.control_uri) / "audit_anchor"
    assert not anchor_dir.is_relative_to(Path(intake_policy.audit_uri))
    table = DeltaTable(intake_policy.audit_uri)
    assert table.metadata().configuration[audit.ANCHORED] == "1"
    files = _anchor_files(intake_policy)
    assert len(files) == 8  # the newest few are kept
    newest = json.loads(files[-1].read_text(encoding="utf-8"))
    last = max(read_rows(intake_policy.audit_uri), key=lambda r: r["seq"])
    # request ids, seq, hashes, versions only: no subject id, nothing of the events but the end of the chain
    assert newest == {"format": 1, "table_id": table.metadata().id, "version": table.version(), "seq": 11,
                      "hash": last["hash"]}
    assert files[-1].name == f"{table.version():020d}.json"
    assert not list(anchor_dir.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("removed", "why"),
    [
        (1, "events seq 11 removed from the end: Delta commit 13 of the audit table is missing (the anchor outside "
            "the table records seq 11 at version 13; the table is at version 12)"),
        (2, "events seq 10..11 removed from the end: Delta commits 12..13 of the audit table are missing (the "
            "anchor outside the table records seq 11 at version 13; the table is at version 11)"),
    ],
    ids=["newest-commit", "two-newest-commits"],
)
def test_removing_the_newest_audit_commit_files_is_caught(
    intake_policy: Policy, capsys: pytest.CaptureFixture[str], removed: int, why: str
) -> None:
    _append_each(intake_policy, 12)  # v0 create, v1 anchoring turned on, v2..v13 one event each
    assert delta_version(intake_policy.audit_uri) == 13
    for version in range(13, 13 - removed, -1):
        _log_file(intake_policy, version).unlink()
    assert len(read_rows(intake_policy.audit_uri)) == 12 - removed  # what the Delta log now says

    n, brk = audit.verify_chain(intake_policy)

    assert n == 12 - removed
    assert brk == audit.ChainBreak(12 - removed, "(missing)", why)
    code, out = _verify_cli(intake_policy, capsys)
    assert code == 1
    assert out.strip() == (f"audit chain BROKEN at event seq {12 - removed} (event_id (missing)): {why}; "
                           f"{12 - removed} event(s) before it are intact")


def test_deleting_the_anchor_is_a_break(intake_policy: Policy, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    _append_each(intake_policy, 3)
    shutil.rmtree(audit.anchor_uri(intake_policy))

    n, brk = audit.verify_chain(intake_policy)

    assert n == 3 and brk is not None and (brk.seq, brk.event_id) == (3, "(anchor)")
    assert brk.why == (f"the anchor of the audit log is missing from {audit.anchor_uri(intake_policy)} although the "
                       f"log is anchored (table property dsr.audit.anchor): it was deleted, so events removed from "
                       f"the end with their commits would go unnoticed")
    code, out = _verify_cli(intake_policy, capsys)
    assert code == 1 and "BROKEN at event seq 3 (event_id (anchor))" in out


def test_deleting_the_anchor_and_the_newest_commit_is_a_break(intake_policy: Policy) -> None:
    import shutil

    _append_each(intake_policy, 4)
    _log_file(intake_policy, delta_version(intake_policy.audit_uri) or 0).unlink()
    shutil.rmtree(audit.anchor_uri(intake_policy))

    n, brk = audit.verify_chain(intake_policy)
    assert n == 3 and brk is not None and "anchor of the audit log is missing" in brk.why


def test_an_anchor_behind_the_chain_end_is_accepted(intake_policy: Policy) -> None:
    """A writer that died between its commit and its anchor leaves the anchor behind: not a break (the commit's
    own record covers the end), and the next append moves the anchor on."""
    _append_each(intake_policy, 5)
    _anchor_files(intake_policy)[-1].unlink()

    assert audit.verify_chain(intake_policy) == (5, None)
    _append_each(intake_policy, 1, prefix="req_more_")
    assert audit.verify_chain(intake_policy) == (6, None)
    assert _anchor_files(intake_policy)[-1].name == f"{delta_version(intake_policy.audit_uri):020d}.json"


def test_an_altered_anchor_is_a_break(intake_policy: Policy) -> None:
    _append_each(intake_policy, 3)
    newest = _anchor_files(intake_policy)[-1]
    original = json.loads(newest.read_text(encoding="utf-8"))
    assert original["seq"] == 2

    newest.write_text(json.dumps({**original, "hash": "f" * 64}), encoding="utf-8")
    n, brk = audit.verify_chain(intake_policy)
    assert n == 2 and brk is not None and brk.seq == 2
    assert brk.why == ("does not match the hash the anchor outside the audit table records "
                       f"(at version {original['version']})")

    newest.write_text("{}", encoding="utf-8")
    n, brk = audit.verify_chain(intake_policy)
    assert n == 3 and brk == audit.ChainBreak(
        3, "(anchor)", f"the anchor file {newest.name} outside the audit table is not a valid anchor (altered?)"
    )


def test_a_deleted_or_replaced_audit_table_is_a_break(intake_policy: Policy) -> None:
    import shutil

    _append_each(intake_policy, 6)
    shutil.rmtree(intake_policy.audit_uri)

    n, brk = audit.verify_chain(intake_policy)
    assert n == 0 and brk == audit.ChainBreak(0, "(missing)", (
        "the audit table is missing, but the anchor outside it records 6 event(s) at table version 7"
    ))

    _append_each(intake_policy, 2, prefix="req_new_")  # a fresh log in its place: fewer commits, another table
    n, brk = audit.verify_chain(intake_policy)
    assert n == 0 and brk is not None and brk.why.startswith("the audit table was replaced")


def test_compacting_the_audit_table_then_removing_the_newest_commit_is_caught(intake_policy: Policy) -> None:
    from dsr.delta import tables as deltautil

    _append_each(intake_policy, 12)
    assert deltautil.compact_small_files(intake_policy.audit_uri, max_files=4) >= 12  # v14, no anchor of its own
    assert audit.verify_chain(intake_policy) == (12, None)
    _append_each(intake_policy, 1, prefix="req_after_")  # v15
    assert audit.verify_chain(intake_policy) == (13, None)

    _log_file(intake_policy, 15).unlink()
    n, brk = audit.verify_chain(intake_policy)
    assert n == 12 and brk is not None and brk.why.startswith(
        "events seq 12 removed from the end: Delta commit 15 of the audit table is missing"
    )


def test_a_log_from_before_the_anchor_verifies_and_is_anchored_by_the_next_append(
    intake_policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from deltalake import DeltaTable

    with monkeypatch.context() as old_dsr:  # appends as the version before the anchor made them
        old_dsr.setattr(audit, "ensure_anchored", lambda policy, table, tail: None)
        old_dsr.setattr(audit, "record_anchor", lambda policy, anchor: None)
        _fill(intake_policy)
    assert audit.ANCHORED not in DeltaTable(intake_policy.audit_uri).metadata().configuration
    assert not Path(audit.anchor_uri(intake_policy)).exists()
    assert audit.verify_chain(intake_policy) == (6, None)  # no anchor ever written: not a break

    _append_each(intake_policy, 1, prefix="req_new_")

    assert DeltaTable(intake_policy.audit_uri).metadata().configuration[audit.ANCHORED] == "1"
    assert audit.verify_chain(intake_policy) == (7, None)
    _log_file(intake_policy, delta_version(intake_policy.audit_uri) or 0).unlink()
    n, brk = audit.verify_chain(intake_policy)
    assert n == 6 and brk is not None and "events seq 6 removed from the end" in brk.why
    shutil.rmtree(audit.anchor_uri(intake_policy))
    n, brk = audit.verify_chain(intake_policy)
    assert brk is not None and "anchor of the audit log is missing" in brk.why


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
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, intake_policy.source, me, go, str(per_writer)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for me in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{me}.ready").exists() for me in ("a", "b")):
        assert time.monotonic() < deadline, "appenders did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    Path(go).touch()  # both start appending at once

    seen: list[tuple[int, audit.ChainBreak | None]] = []
    deadline = time.monotonic() + 120
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        seen.append(audit.verify_chain(intake_policy))
    outs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], outs
    assert seen and [s for s in seen if s[1] is not None] == []
    assert audit.verify_chain(intake_policy) == (1 + 2 * per_writer, None)
    assert _anchor_files(intake_policy)[-1].name == f"{delta_version(intake_policy.audit_uri):020d}.json"


@pytest.mark.s3
@pytest.mark.usefixtures("s3_env")
def test_on_s3_removing_the_newest_commit_or_the_anchor_is_caught(tmp_path: Path) -> None:
    import os
    import uuid

    import boto3

    from dsr.core.policy import load_policy
    from tests.helpers import INTAKE_POLICY, write_policy

    prefix = f"audit-{uuid.uuid4().hex[:8]}"
    policy = load_policy(write_policy(tmp_path, INTAKE_POLICY.replace("lake: ./lake", f"lake: s3://lake/{prefix}")))
    assert audit.anchor_uri(policy) == f"s3://lake/{prefix}/_dsr/audit_anchor"
    _append_each(policy, 4)  # v0 create, v1 anchoring turned on, v2..v5
    assert audit.verify_chain(policy) == (4, None)
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    anchors = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix=f"{prefix}/_dsr/audit_anchor/")["Contents"]]
    assert anchors[-1] == f"{prefix}/_dsr/audit_anchor/{5:020d}.json"

    s3.delete_object(Bucket="lake", Key=f"{prefix}/_dsr/audit/_delta_log/{5:020d}.json")
    n, brk = audit.verify_chain(policy)
    assert n == 3 and brk is not None and brk.why.startswith(
        "events seq 3 removed from the end: Delta commit 5 of the audit table is missing"
    )

    for key in anchors:
        s3.delete_object(Bucket="lake", Key=key)
    n, brk = audit.verify_chain(policy)
    assert n == 3 and brk is not None and brk.event_id == "(anchor)" and "is missing from s3://lake/" in brk.why
