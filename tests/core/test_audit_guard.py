"""dsr/core/audit_guard.py: a command that writes refuses a broken audit chain, one line and exit 1, with nothing
written; the check starts from the newest verified point, so on an intact log it reads only the rows added
since (counted by ``deltautil.reads``), and a tampering that happened before later appends is still caught.

Tampering as someone with write access would do it: overwrite the audit table with an edited copy (Delta), or
append events outside dsr, on real tables in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dsr.core import audit, audit_guard
from dsr.core.policy import Policy
from dsr.delta import tables as deltautil
from dsr.errors import AuditChainError
from tests import lakes
from tests.core.conftest import fill_audit
from tests.core.test_audit_chain import (
    _alter_details,
    _alter_table_name,
    _forge_a_new_last_event,
    _move_to_the_end,
    _remove_one,
    _remove_the_last,
    _rewrite,
    _swap_seq,
)
from tests.invoke import dsr


def _audit_reads(policy: Policy) -> dict[str, int]:
    key = policy.audit_uri.rstrip("/")
    return {kind: n for (uri, kind), n in deltautil.reads.items() if uri == key}


def _checked(policy: Policy) -> audit_guard.ChainPoint:
    """require_intact_chain, then remember, as a writing command does."""
    point = audit_guard.require_intact_chain(policy)
    audit_guard.remember(policy, point)
    return point


# --- the check: from the verified point, reading only what was added since ---------------------------------------


def _point_files(policy: Policy) -> list[str]:
    return sorted(p.name for p in Path(audit_guard.points_uri(policy)).iterdir())


def test_an_intact_log_is_checked_from_the_point_reading_only_new_rows(intake_policy: Policy) -> None:
    rows = fill_audit(intake_policy)
    assert _point_files(intake_policy) == [f"{0:020d}.json"]  # the new log's empty chain, by its first append
    deltautil.reads.clear()
    first = _checked(intake_policy)
    assert _audit_reads(intake_policy) == {"filtered": 1}  # the rows since version 0, not the whole log
    assert (first.seq, first.hash) == (rows[-1]["seq"], rows[-1]["hash"])
    assert _point_files(intake_policy) == [f"{0:020d}.json", f"{first.version:020d}.json"]

    for i in range(3):
        audit.append(intake_policy, [audit.AuditEvent("received", request_id=f"req_n{i}")])
    deltautil.reads.clear()
    point = _checked(intake_policy)

    assert _audit_reads(intake_policy) == {"filtered": 1}  # the three new files, never the whole log
    assert point.seq == first.seq + 3 and point.version == first.version + 3
    deltautil.reads.clear()
    assert audit_guard.require_intact_chain(intake_policy) == point  # nothing new: no row read at all
    assert _audit_reads(intake_policy) == {}


TAMPERING: list[tuple[Callable[[list[dict[str, Any]]], list[dict[str, Any]]], int]] = [
    (_alter_details, 3), (_alter_table_name, 4), (_remove_one, 3), (_swap_seq, 2), (_move_to_the_end, 1),
    (_remove_the_last, 5), (_forge_a_new_last_event, 6),
]


@pytest.mark.parametrize(("edit", "bad_seq"), TAMPERING, ids=[e.__name__.strip("_") for e, _ in TAMPERING])
def test_tampering_after_the_point_is_refused_naming_the_first_broken_event(
    intake_policy: Policy, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], bad_seq: int
) -> None:
    fill_audit(intake_policy)
    _checked(intake_policy)
    _rewrite(intake_policy, edit)
    points = sorted(Path(audit_guard.points_uri(intake_policy)).iterdir())

    with pytest.raises(AuditChainError) as err:
        audit_guard.require_intact_chain(intake_policy)

    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 1
    assert f"the audit log {intake_policy.audit_uri} is broken at event seq {bad_seq} " in message
    assert audit.verify_chain(intake_policy)[1].seq == bad_seq  # type: ignore[union-attr]
    assert sorted(Path(audit_guard.points_uri(intake_policy)).iterdir()) == points  # no point for a broken log


def test_tampering_is_caught_after_later_appends_wrote_new_anchors(intake_policy: Policy) -> None:
    """An edit, then intake as usual (each append anchors the new end): the files under the point changed."""
    fill_audit(intake_policy)
    _checked(intake_policy)
    _rewrite(intake_policy, _alter_details)
    for i in range(2):
        audit.append(intake_policy, [audit.AuditEvent("received", request_id=f"req_late{i}")])

    with pytest.raises(AuditChainError, match="broken at event seq 3 "):
        audit_guard.require_intact_chain(intake_policy)


def test_events_appended_outside_dsr_after_the_point_are_refused(intake_policy: Policy) -> None:
    """A correctly hashed event appended with plain Delta (no record of it in the commit info)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    fill_audit(intake_policy)
    _checked(intake_policy)
    data = deltautil.read_all(DeltaTable(intake_policy.audit_uri))
    forged = _forge_a_new_last_event(sorted(data.to_pylist(), key=lambda r: r["seq"]))[-1:]
    write_deltalake(intake_policy.audit_uri, pa.Table.from_pylist(forged, schema=data.schema), mode="append")

    with pytest.raises(AuditChainError, match=r"broken at event seq 6 .*appended outside dsr"):
        audit_guard.require_intact_chain(intake_policy)


def test_removing_the_newest_commits_and_their_anchors_is_caught_by_the_point(intake_policy: Policy) -> None:
    """What the anchors alone cannot show: the newest commits deleted with the anchors they wrote (the older
    anchors left in place look consistent, so dsr audit verify passes); the verified point is ahead."""
    import shutil

    from tests.core.conftest import anchor_files

    fill_audit(intake_policy)
    kept = {p.name for p in anchor_files(intake_policy)}
    for i in range(2):
        audit.append(intake_policy, [audit.AuditEvent("received", request_id=f"req_gone{i}")])
    point = _checked(intake_policy)
    log = Path(intake_policy.audit_uri) / "_delta_log"
    for version in (point.version, point.version - 1):
        (log / f"{version:020d}.json").unlink()
    for anchor in anchor_files(intake_policy):
        if anchor.name not in kept:
            anchor.unlink()
    assert audit.verify_chain(intake_policy) == (6, None)  # the chain as it stands is consistent

    with pytest.raises(AuditChainError) as err:
        audit_guard.require_intact_chain(intake_policy)
    assert f"broken at event seq 6 (event_id (missing)): Delta commits {point.version - 1}..{point.version} of " \
           "the audit table are missing" in str(err.value)

    shutil.rmtree(intake_policy.audit_uri)  # the whole table gone, anchors too: the point still says so
    shutil.rmtree(audit.anchor_uri(intake_policy))
    with pytest.raises(AuditChainError, match="the audit table is missing, but the verified point"):
        audit_guard.require_intact_chain(intake_policy)


def test_dsr_s_own_compaction_keeps_the_check_incremental(intake_policy: Policy) -> None:
    for i in range(6):
        audit.append(intake_policy, [audit.AuditEvent("received", request_id=f"req_c{i}")])
    _checked(intake_policy)
    assert audit_guard.compact(intake_policy, max_files=4) == 6
    audit.append(intake_policy, [audit.AuditEvent("received", request_id="req_after")])
    deltautil.reads.clear()

    point = audit_guard.require_intact_chain(intake_policy)

    assert _audit_reads(intake_policy) == {"filtered": 1} and point.seq == 6
    assert audit.verify_chain(intake_policy) == (7, None)


def test_a_compaction_by_someone_else_is_checked_in_full_then_accepted(intake_policy: Policy) -> None:
    from deltalake import DeltaTable

    fill_audit(intake_policy)
    _checked(intake_policy)
    DeltaTable(intake_policy.audit_uri).optimize.compact()  # same rows, new files: the point no longer holds
    deltautil.reads.clear()

    point = audit_guard.require_intact_chain(intake_policy)

    assert _audit_reads(intake_policy).get("full") == 1 and point.seq == 5


def test_a_log_from_before_the_points_is_checked_in_full_once(intake_policy: Policy) -> None:
    import shutil

    fill_audit(intake_policy)
    shutil.rmtree(audit_guard.points_uri(intake_policy))
    deltautil.reads.clear()
    point = _checked(intake_policy)
    assert _audit_reads(intake_policy) == {"full": 1} and point.seq == 5
    audit.append(intake_policy, [audit.AuditEvent("received", request_id="req_next")])
    deltautil.reads.clear()
    assert audit_guard.require_intact_chain(intake_policy).seq == 6
    assert _audit_reads(intake_policy) == {"filtered": 1}


def test_a_damaged_point_file_falls_back_to_the_full_check(intake_policy: Policy) -> None:
    fill_audit(intake_policy)
    point = _checked(intake_policy)
    (Path(audit_guard.points_uri(intake_policy)) / f"{point.version:020d}.json").write_text("{not json")
    deltautil.reads.clear()
    assert audit_guard.require_intact_chain(intake_policy) == point
    assert _audit_reads(intake_policy).get("full") == 1


# --- the commands that write: run (and the DAG's claim), sweep ----------------------------------------------------


@pytest.fixture()
def tampered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lakes.Lake:
    """The busy lake after a run that erased one person, with another erasure filed, then one event of the
    audit log altered by overwriting the table (Delta), as ``dsr audit verify`` would catch it."""
    lake = lakes.busy(tmp_path / "w").use(monkeypatch)
    assert dsr("request", "erase", "1003").returncode == 0
    assert dsr("run").returncode == 0
    assert dsr("request", "erase", "1007").returncode == 0

    def alter(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[2]["details"] = rows[2]["details"].replace("}", ',"x":1}', 1)
        return rows

    _rewrite(lake.policy(), alter)
    verified = dsr("audit", "verify")
    assert verified.returncode == 1 and "BROKEN at event seq 2 " in verified.stdout
    return lake


def _refused(lake: lakes.Lake, *args: str) -> None:
    before = lakes.files(lake.root)
    out = dsr(*args)
    assert out.returncode == 1, (out.stdout, out.stderr)
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"dsr: error: the audit log {lake.policy().audit_uri} is broken at event seq 2 ")
    assert "1007" not in out.stdout + out.stderr and "1003" not in out.stdout + out.stderr
    assert lakes.files(lake.root) == before


def test_a_run_on_a_broken_audit_chain_writes_nothing(tampered: lakes.Lake) -> None:
    _refused(tampered, "run")
    from dsr.core import control

    assert {r.status for r in control.list_requests(tampered.policy()) if r.kind == "erase"} == {
        "completed", "pending"}


def test_a_sweep_on_a_broken_audit_chain_writes_nothing(tampered: lakes.Lake) -> None:
    _refused(tampered, "sweep")
    assert dsr("sweep", "--dry-run").returncode == 0  # a dry run writes nothing anyway


def test_a_purge_on_a_broken_audit_chain_writes_nothing(tampered: lakes.Lake) -> None:
    _refused(tampered, "purge")
    assert dsr("purge", "--dry-run").returncode == 0  # a dry run writes nothing anyway


def test_the_dag_s_claim_refuses_a_broken_audit_chain(tampered: lakes.Lake) -> None:
    """The DAG's claim task is claim_batch (its AuditChainError fails the task at once: no retries)."""
    from dsr.steps import claim_batch

    before = lakes.files(tampered.root)
    with pytest.raises(AuditChainError, match="broken at event seq 2 "):
        claim_batch(tampered.policy(), "dag_run_1")
    assert lakes.files(tampered.root) == before


@pytest.mark.s3
@pytest.mark.usefixtures("s3_env")
def test_on_s3_the_check_is_incremental_and_catches_an_overwrite(tmp_path: Path) -> None:
    import uuid

    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from dsr.core.policy import load_policy
    from dsr.delta import storage

    prefix = f"guard-{uuid.uuid4().hex[:8]}"
    policy = load_policy(lakes.write_policy(
        tmp_path, lakes.INTAKE_POLICY.replace("lake: ./lake", f"lake: s3://lake/{prefix}")))
    fill_audit(policy)
    assert audit_guard.points_uri(policy) == f"s3://lake/{prefix}/_dsr/audit_verified"
    deltautil.reads.clear()
    point = _checked(policy)
    assert _audit_reads(policy) == {"filtered": 1} and point.seq == 5

    options = storage.storage_options(policy.audit_uri)
    data = deltautil.read_all(DeltaTable(policy.audit_uri, storage_options=options))
    rows = _alter_details(sorted(data.to_pylist(), key=lambda r: r["seq"]))
    write_deltalake(policy.audit_uri, pa.Table.from_pylist(rows, schema=data.schema), mode="overwrite",
                    storage_options=options)
    with pytest.raises(AuditChainError, match=f"the audit log s3://lake/{prefix}/_dsr/audit is broken at event seq 3 "):
        audit_guard.require_intact_chain(policy)
