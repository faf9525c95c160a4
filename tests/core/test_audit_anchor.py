"""dsr/core/audit_anchor.py: the anchor of the audit log kept outside its table catches the newest commits
removed, the anchor deleted or altered, and the table deleted or replaced (locally and on S3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsr.core import audit
from dsr.core.policy import Policy
from tests import lakes
from tests.core.conftest import anchor_files, fill_audit, verify_cli


def _log_file(policy: Policy, version: int) -> Path:
    return Path(policy.audit_uri) / "_delta_log" / f"{version:020d}.json"


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
    files = anchor_files(intake_policy)
    assert len(files) == 8  # the newest few are kept
    newest = json.loads(files[-1].read_text(encoding="utf-8"))
    last = max(lakes.rows(intake_policy.audit_uri), key=lambda r: r["seq"])
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
    assert lakes.version(intake_policy.audit_uri) == 13
    for version in range(13, 13 - removed, -1):
        _log_file(intake_policy, version).unlink()
    assert len(lakes.rows(intake_policy.audit_uri)) == 12 - removed  # what the Delta log now says

    n, brk = audit.verify_chain(intake_policy)

    assert n == 12 - removed
    assert brk == audit.ChainBreak(12 - removed, "(missing)", why)
    code, out = verify_cli(intake_policy, capsys)
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
    code, out = verify_cli(intake_policy, capsys)
    assert code == 1 and "BROKEN at event seq 3 (event_id (anchor))" in out


def test_deleting_the_anchor_and_the_newest_commit_is_a_break(intake_policy: Policy) -> None:
    import shutil

    _append_each(intake_policy, 4)
    _log_file(intake_policy, lakes.version(intake_policy.audit_uri) or 0).unlink()
    shutil.rmtree(audit.anchor_uri(intake_policy))

    n, brk = audit.verify_chain(intake_policy)
    assert n == 3 and brk is not None and "anchor of the audit log is missing" in brk.why


def test_an_anchor_behind_the_chain_end_is_accepted(intake_policy: Policy) -> None:
    """A writer that died between its commit and its anchor leaves the anchor behind: not a break (the commit's
    own record covers the end), and the next append moves the anchor on."""
    _append_each(intake_policy, 5)
    anchor_files(intake_policy)[-1].unlink()

    assert audit.verify_chain(intake_policy) == (5, None)
    _append_each(intake_policy, 1, prefix="req_more_")
    assert audit.verify_chain(intake_policy) == (6, None)
    assert anchor_files(intake_policy)[-1].name == f"{lakes.version(intake_policy.audit_uri):020d}.json"


def test_an_altered_anchor_is_a_break(intake_policy: Policy) -> None:
    _append_each(intake_policy, 3)
    newest = anchor_files(intake_policy)[-1]
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
        fill_audit(intake_policy)
    assert audit.ANCHORED not in DeltaTable(intake_policy.audit_uri).metadata().configuration
    assert not Path(audit.anchor_uri(intake_policy)).exists()
    assert audit.verify_chain(intake_policy) == (6, None)  # no anchor ever written: not a break

    _append_each(intake_policy, 1, prefix="req_new_")

    assert DeltaTable(intake_policy.audit_uri).metadata().configuration[audit.ANCHORED] == "1"
    assert audit.verify_chain(intake_policy) == (7, None)
    _log_file(intake_policy, lakes.version(intake_policy.audit_uri) or 0).unlink()
    n, brk = audit.verify_chain(intake_policy)
    assert n == 6 and brk is not None and "events seq 6 removed from the end" in brk.why
    shutil.rmtree(audit.anchor_uri(intake_policy))
    n, brk = audit.verify_chain(intake_policy)
    assert brk is not None and "anchor of the audit log is missing" in brk.why


@pytest.mark.s3
@pytest.mark.usefixtures("s3_env")
def test_on_s3_removing_the_newest_commit_or_the_anchor_is_caught(tmp_path: Path) -> None:
    import os
    import uuid

    import boto3

    from dsr.core.policy import load_policy
    from tests.lakes import INTAKE_POLICY, write_policy

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
