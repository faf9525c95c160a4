"""dsr/audit.py: an append-only hash chain on Delta; any row altered, removed or reordered is caught."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from dsr import audit
from dsr.cli import main
from dsr.policy import Policy
from tests.helpers import delta_version, read_rows


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

    from dsr import deltautil

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
    from dsr import deltautil

    for i in range(12):
        audit.append(intake_policy, [audit.AuditEvent("received", request_id=f"req_{i}")])
    assert deltautil.compact_small_files(intake_policy.audit_uri, max_files=4) >= 12
    n, broken = audit.verify_chain(intake_policy)
    assert broken is None and n == 12
    assert deltautil.compact_small_files(intake_policy.audit_uri, max_files=4) == 0
