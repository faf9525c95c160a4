"""The append-only, hash-chained audit log ``<lake>/<control>/audit`` (Delta).

Each row is one event. ``hash = sha256(prev_hash + "\\n" + canonical JSON of the event)``; the first event's
prev_hash is 64 zeros. Appends commit with no silent rebase, so the chain stays one line even with
concurrent writers (a writer that loses the race re-reads the tail and tries again). Each append also records
the (seq, hash) of the chain's new end in its Delta commit info, so ``verify_chain`` notices events removed
from the end, which the links alone cannot show.
Events hold request ids, run ids, table names and metrics — never subject ids.

The checks of the chain are pure functions in :mod:`dsr.core.audit_chain`. The anchor outside the table
(:mod:`dsr.core.audit_anchor`) catches the newest commit files deleted.
``verify_chain`` lists the anchors *before* it loads the table and checks the newest one: the table is at that
version or later (else commits were deleted: the missing commits and events are named), has the same table id
(else it was replaced), holds the recorded seq with the recorded hash. An anchor behind the chain's end is fine
(a concurrent or crashed writer had not written its own yet): the commits' own (seq, hash) cover the rest, and
compaction commits carry none and change no row. An anchored log that holds events but has no anchor file is a
break (the anchors were deleted); a log without the property predates the anchors and is checked as before.
Limits: see :mod:`dsr.core.audit_anchor` and the README.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsr.core.audit_anchor import (
    ANCHORED,
    COMMIT_HASH,
    COMMIT_SEQ,
    Anchor,
    BadAnchor,
    anchor_uri,
    ensure_anchored,
    list_anchors,
    newest_anchor,
    record_anchor,
    recorded_end,
)
from dsr.core.audit_chain import (
    GENESIS,
    ChainBreak,
    canonical,
    chain_hash,
    check_anchor,
    check_end,
    check_links,
    missing_table,
)
from dsr.core.audit_points import ChainPoint, files_digest, remember
from dsr.core.audit_read import SKEW, event_columns, events, events_by_request, events_read, log_version
from dsr.core.audit_schema import schema as _schema
from dsr.core.policy import Policy
from dsr.delta import tables as deltautil

__all__ = [
    "ANCHORED", "EVENTS", "GENESIS", "SKEW", "AuditEvent", "ChainBreak", "ChainView", "anchor_uri", "append",
    "append_rows", "canonical", "event_columns", "events", "events_by_request", "events_read", "log_version",
    "verify_chain", "verify_view",
]


EVENTS = (
    "received", "claimed", "released", "table_exported", "exported", "table_erased", "table_retained",
    "table_failed", "verified", "completed", "failed", "table_purged", "minimised",
    "export_deleted", "residue_scanned", "table_swept", "export_link_issued", "notified", "notify_failed",
    "coverage_checked", "identity_resolved",
)


@dataclass(frozen=True)
class AuditEvent:
    event: str
    request_id: str | None = None
    run_id: str | None = None
    table_name: str | None = None
    details: Mapping[str, Any] | None = None


def _open(policy: Policy) -> Any:
    return deltautil.create_if_missing(
        policy.audit_uri, _schema(), name="dsr_audit", description="dsr-lake hash-chained audit log"
    )


def _tail(table: Any) -> tuple[int, str]:
    """(seq, hash) of the chain's end at the loaded version: from the newest append's commit info (every append
    records it), so an append reads no rows; a log whose commits record none is read (once, small)."""
    import pyarrow.compute as pc

    recorded = recorded_end(table, depth=20)
    if recorded is not None:
        return recorded
    if not table.file_uris():
        return -1, GENESIS
    data = deltautil.read_all(table, columns=["seq", "hash"])
    if data.num_rows == 0:
        return -1, GENESIS
    i = pc.index(data["seq"], pc.max(data["seq"])).as_py()
    return int(data["seq"][i].as_py()), str(data["hash"][i].as_py())


# --- append and read --------------------------------------------------------------------------------------------


_DETAILS = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
"""The compact JSON of an event's details (one encoder for all: ``json.dumps`` with options builds one per call)."""


def _encoded(details: Mapping[str, Any] | None, texts: dict[int, tuple[Any, str]]) -> str:
    """The details' JSON text; the same object (one check's result recorded for every request) encoded once
    per append (``texts`` keeps the object with its text, so its id stays its own)."""
    kept = texts.get(id(details))
    if kept is None or kept[0] is not details:
        kept = texts[id(details)] = (details, _DETAILS.encode(dict(details or {})))
    return kept[1]


def append(policy: Policy, batch: Sequence[AuditEvent], *, now: dt.datetime | None = None) -> list[str]:
    """Append events to the chain in one commit, then anchor it outside the table. Returns their event ids."""
    return [r["event_id"] for r in append_rows(policy, batch, now=now)[0]]


def append_rows(
    policy: Policy, batch: Sequence[AuditEvent], *, now: dt.datetime | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """:func:`append`, returning the rows as written (the log's columns, in its order; ``details`` as its JSON
    text, as a read gets it before decoding) and the version of the log its commit made (-1: nothing appended)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    if not batch:
        return [], -1
    for ev in batch:
        if ev.event not in EVENTS:
            raise ValueError(f"unknown audit event {ev.event!r}")
    table = _open(policy)
    if table.version() == 0 and not table.file_uris():  # a new log: its empty chain is the first verified point
        remember(policy, ChainPoint(str(table.metadata().id), 0, -1, GENESIS, *files_digest([])))
    ensure_anchored(policy, table, _tail)
    at = now or dt.datetime.now(dt.UTC)
    # Stored as UTC microseconds: hash exactly what will be read back (a naive time means UTC).
    at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
    ids = [uuid.uuid4().hex for _ in batch]

    written: list[dict[str, Any]] = []
    texts: dict[int, tuple[Any, str]] = {}

    def attempt() -> Anchor:
        table.update_incremental()
        seq, prev = _tail(table)
        written.clear()  # a retry starts again from the new tail
        for event_id, ev in zip(ids, batch, strict=True):
            seq += 1
            row: dict[str, Any] = {
                "seq": seq,
                "event_id": event_id,
                "at": at,
                "event": ev.event,
                "request_id": ev.request_id,
                "run_id": ev.run_id,
                "table_name": ev.table_name,
                "details": _encoded(ev.details, texts),
            }
            row["prev_hash"] = prev
            row["hash"] = prev = chain_hash(prev, row)
            written.append(row)
        write_deltalake(
            table,
            pa.Table.from_pylist(written, schema=_schema()),
            mode="append",
            commit_properties=deltautil.commit_properties(
                {"dsr.component": "audit", COMMIT_SEQ: str(seq), COMMIT_HASH: prev}
            ),
        )
        # no silent rebase: the commit is the version right after the one read above
        return Anchor(table.version(), seq, prev, table.metadata().id)

    anchor = deltautil.optimistic(attempt, what="audit append")
    record_anchor(policy, anchor)
    return written, anchor.version


@dataclass(frozen=True)
class ChainView:
    """What :func:`verify_view` checked: events checked, the first break (None: intact), the audit table as it
    was read (None: no log) and the chain's end in it, (seq, hash), (-1, 64 zeros) when it holds no event."""

    checked: int
    broken: ChainBreak | None
    table: Any
    end: tuple[int, str]


def verify_chain(policy: Policy) -> tuple[int, ChainBreak | None]:
    """Recompute the chain. Returns (events checked, first break or None).

    Besides the links between rows, the end of the chain is checked against the (seq, hash) that the newest
    append recorded in its Delta commit info, so events removed from the end are found too; and against the
    newest anchor outside the table, so removing the newest commits themselves is found as well.
    """
    view = verify_view(policy)
    return view.checked, view.broken


def verify_view(policy: Policy) -> ChainView:
    """:func:`verify_chain`, with the table it read and the chain's end there (for the guard's verified
    point, :mod:`dsr.core.audit_guard`)."""
    view = ChainView(0, None, None, (-1, GENESIS))
    for _ in range(3):
        # The anchors first, the table second: an anchor is written after its commit, so the table loaded
        # next is at its version or later, whatever writers do meanwhile.
        try:
            anchor: Anchor | str | None = newest_anchor(policy)
        except BadAnchor as exc:
            anchor = str(exc)
        table = deltautil.open_table(policy.audit_uri)
        view, settled = _verify(policy, table, anchor)
        if settled:
            break
    return view


def _verify(policy: Policy, table: Any, anchor: Anchor | str | None) -> tuple[ChainView, bool]:
    """The view, and False when it was taken while the log was being anchored.

    The checks run in a fixed order (links, hashes, commit records, anchor): the first break wins.
    """
    if table is None:
        return ChainView(*missing_table(anchor), None, (-1, GENESIS)), True
    rows = sorted(deltautil.read_all(table).to_pylist(), key=lambda r: (r["seq"], r["event_id"]))
    n = len(rows)
    end = (int(rows[-1]["seq"]), str(rows[-1]["hash"])) if rows else (-1, GENESIS)

    def seen(checked: tuple[int, ChainBreak | None]) -> ChainView:
        return ChainView(checked[0], checked[1], table, end)

    broken = check_links(rows) or check_end(rows, recorded_end(table))
    if broken is not None:
        return seen(broken), True
    if isinstance(anchor, str):
        return seen((n, ChainBreak(n, "(anchor)", anchor))), True
    if anchor is None:
        if n and ANCHORED in table.metadata().configuration:
            if list_anchors(policy):
                return seen((n, None)), False  # anchored while we looked: look again
            return seen((n, ChainBreak(n, "(anchor)", (
                f"the anchor of the audit log is missing from {anchor_uri(policy)} although the log is anchored "
                f"(table property {ANCHORED}): it was deleted, so events removed from the end with their "
                "commits would go unnoticed"
            )))), True
        return seen((n, None)), True  # a log from before the anchors: links and commit info only
    return seen(check_anchor(table.metadata().id, table.version(), rows, anchor)), True
