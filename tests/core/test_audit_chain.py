"""dsr/core/audit_chain.py: the pure checks of the hash chain (links, hashes, the recorded end, the anchor), on
hand-built rows and on an audit table tampered with underneath; any row altered, removed or reordered is caught.

Valid hashes come from ``tests.expect.audit_hash`` (a second implementation of README's rule), never from
``audit_chain.chain_hash``."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from dsr.core import audit, audit_chain
from dsr.core.audit_anchor import Anchor
from dsr.core.policy import Policy
from tests import expect, lakes
from tests.core.conftest import fill_audit, verify_cli


def test_each_hash_covers_the_previous_hash_and_the_canonical_event(intake_policy: Policy) -> None:
    rows = fill_audit(intake_policy)

    stored = {r["seq"]: r for r in lakes.rows(intake_policy.audit_uri)}
    prev = audit.GENESIS
    for row in rows:
        raw = stored[row["seq"]]
        assert raw["prev_hash"] == prev
        assert raw["hash"] == expect.audit_hash(prev, raw)
        prev = raw["hash"]


# --- tampering: edit the Delta table underneath ---------------------------------------------------------------


def _rewrite(policy: Policy, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Tamper the way someone with write access would: overwrite the table with an edited copy."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from dsr.delta import tables as deltautil

    data = deltautil.read_all(DeltaTable(policy.audit_uri))
    rows = sorted(data.to_pylist(), key=lambda r: r["seq"])
    write_deltalake(policy.audit_uri, pa.Table.from_pylist(edit(rows), schema=data.schema), mode="overwrite")


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
    fill_audit(intake_policy)
    _rewrite(intake_policy, edit)

    n, brk = audit.verify_chain(intake_policy)

    assert brk is not None and brk.seq == bad_seq and why in brk.why
    assert n == intact
    by_seq = {r["seq"]: r["event_id"] for r in lakes.rows(intake_policy.audit_uri)}
    assert brk.event_id == by_seq.get(bad_seq, "(missing)")
    code, out = verify_cli(intake_policy, capsys)
    assert code == 1
    assert f"BROKEN at event seq {bad_seq} (event_id {brk.event_id})" in out and why in out


# --- the checks on hand-built rows ---------------------------------------------------------------------------

ZEROS = "0" * 64  # README: the first event's prev_hash
AT = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
TABLE_ID = "3f1c2b9e-audit-table"


def _chain(n: int) -> list[dict[str, Any]]:
    """n well-linked event rows, seq 0..n-1, hashed by tests.expect."""
    rows: list[dict[str, Any]] = []
    prev = ZEROS
    for seq in range(n):
        row: dict[str, Any] = {
            "seq": seq, "event_id": f"{seq:032x}", "at": AT + dt.timedelta(seconds=seq), "event": "received",
            "request_id": f"req_{seq}", "run_id": None, "table_name": None, "details": '{"kind":"erase"}',
            "prev_hash": prev,
        }
        row["hash"] = prev = expect.audit_hash(prev, row)
        rows.append(row)
    return rows


def test_an_intact_chain_passes_every_check() -> None:
    rows = _chain(5)
    end = (4, rows[4]["hash"])

    assert audit_chain.check_links(rows) is None
    assert audit_chain.check_links([]) is None
    assert audit_chain.check_end(rows, end) is None
    assert audit_chain.check_end(rows, None) is None  # no append recorded an end: nothing to compare
    assert audit_chain.check_anchor(TABLE_ID, 6, rows, Anchor(6, 4, rows[4]["hash"], TABLE_ID)) == (5, None)
    # an anchor behind the chain's end (a writer died before writing its own) is fine
    assert audit_chain.check_anchor(TABLE_ID, 6, rows, Anchor(4, 2, rows[2]["hash"], TABLE_ID)) == (5, None)
    assert audit_chain.missing_table(None) == (0, None)


def test_the_hash_is_the_one_readme_documents() -> None:
    row = {**_chain(1)[0], "at": dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
           "details": '{"note":"Zoë"}'}

    assert audit_chain.chain_hash(ZEROS, row) == expect.audit_hash(ZEROS, row)


def test_a_repeated_seq_is_a_break() -> None:
    rows = _chain(4)
    again = {**rows[1], "event_id": "f" * 32}

    assert audit_chain.check_links([*rows[:2], again, *rows[2:]]) == (
        2, audit_chain.ChainBreak(1, "f" * 32, "sequence number repeated")
    )


def test_a_gap_in_the_seqs_is_a_break() -> None:
    rows = _chain(4)

    assert audit_chain.check_links(rows[:2] + rows[3:]) == (
        2, audit_chain.ChainBreak(3, rows[3]["event_id"], "missing event before it")
    )


def test_a_broken_prev_hash_link_is_a_break() -> None:
    rows = _chain(4)
    rows[2]["prev_hash"] = "f" * 64
    rows[2]["hash"] = expect.audit_hash("f" * 64, rows[2])  # its own hash is right: only the link is wrong

    assert audit_chain.check_links(rows) == (
        2, audit_chain.ChainBreak(2, rows[2]["event_id"], "previous-hash link broken (an event removed or reordered)")
    )


def test_an_altered_detail_is_a_break() -> None:
    rows = _chain(4)
    rows[1]["details"] = '{"kind":"export"}'

    assert audit_chain.check_links(rows) == (
        1, audit_chain.ChainBreak(1, rows[1]["event_id"], "content altered (hash mismatch)")
    )


def test_an_end_recorded_beyond_the_rows_is_a_break() -> None:
    rows = _chain(5)

    assert audit_chain.check_end(rows[:3], (4, rows[4]["hash"])) == (3, audit_chain.ChainBreak(
        3, "(missing)", "events seq 3..4 removed from the end (the last append recorded seq 4)"
    ))
    assert audit_chain.check_end(rows, (4, "f" * 64)) == (4, audit_chain.ChainBreak(
        4, rows[4]["event_id"], "does not match the hash its append recorded in the Delta log"
    ))


def test_a_row_appended_after_the_recorded_end_is_a_break() -> None:
    rows = _chain(5)

    assert audit_chain.check_end(rows, (3, rows[3]["hash"])) == (4, audit_chain.ChainBreak(
        4, rows[4]["event_id"], "appended outside dsr (no audit append recorded it)"
    ))


def test_an_anchor_of_another_table_id_is_a_break() -> None:
    rows = _chain(3)

    assert audit_chain.check_anchor("another-table", 5, rows, Anchor(5, 2, rows[2]["hash"], TABLE_ID)) == (
        0, audit_chain.ChainBreak(0, rows[0]["event_id"], (
            "the audit table was replaced: its Delta table id is not the one the anchor outside it records "
            "(at version 5)"
        ))
    )


def test_an_anchor_ahead_of_the_table_version_is_a_break() -> None:
    rows = _chain(3)

    assert audit_chain.check_anchor(TABLE_ID, 4, rows, Anchor(6, 4, "f" * 64, TABLE_ID)) == (
        3, audit_chain.ChainBreak(3, "(missing)", (
            "events seq 3..4 removed from the end: Delta commits 5..6 of the audit table are missing (the anchor "
            "outside the table records seq 4 at version 6; the table is at version 4)"
        ))
    )
    # commits missing although the rows still reach the anchored seq: still a break
    assert audit_chain.check_anchor(TABLE_ID, 4, rows, Anchor(5, 2, rows[2]["hash"], TABLE_ID)) == (
        3, audit_chain.ChainBreak(3, "(missing)", (
            "Delta commit 5 of the audit table is missing (the anchor outside the table records seq 2 at "
            "version 5; the table is at version 4)"
        ))
    )


def test_a_missing_table_is_a_break_only_when_an_anchor_says_there_were_events() -> None:
    assert audit_chain.missing_table(Anchor(7, 5, "f" * 64, TABLE_ID)) == (0, audit_chain.ChainBreak(
        0, "(missing)", "the audit table is missing, but the anchor outside it records 6 event(s) at table version 7"
    ))
    assert audit_chain.missing_table("the anchor file x is not a valid anchor") == (
        0, audit_chain.ChainBreak(0, "(anchor)", "the anchor file x is not a valid anchor")
    )
