"""The audit log's hash chain, as pure checks over its rows (no I/O): links, hashes, the end the last append
recorded, and the anchor kept outside the table. :mod:`dsr.core.audit` reads the rows, the commit info and the
anchor, and runs these in a fixed order: the first break wins.

``hash = sha256(prev_hash + "\\n" + canonical JSON of the event)``; the first event's prev_hash is 64 zeros.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dsr.core.audit_anchor import Anchor

__all__ = ["GENESIS", "ChainBreak", "canonical", "chain_hash", "check_anchor", "check_end", "check_links",
           "missing_table"]

GENESIS = "0" * 64

Checked = tuple[int, "ChainBreak | None"]  # (events checked, first break or None)


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    event_id: str
    why: str


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""One encoder for every event (``json.dumps`` with options builds a new one per call): the same text."""


@lru_cache(maxsize=256)
def _utc_text(at: dt.datetime) -> str:
    """An event time as the chain writes it (the events of one append share theirs: formatted once)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(row: Mapping[str, Any]) -> str:
    """The canonical JSON text of an event row (everything but the hashes)."""
    body = {k: row[k] for k in ("seq", "event_id", "at", "event", "request_id", "run_id", "table_name", "details")}
    at = body["at"]
    if isinstance(at, dt.datetime):
        body["at"] = _utc_text(at)
    return _CANONICAL.encode(body)


def chain_hash(prev: str, row: Mapping[str, Any]) -> str:
    """The hash of an event row that follows ``prev``."""
    return hashlib.sha256((prev + "\n" + canonical(row)).encode("utf-8")).hexdigest()


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}..{last}"


def missing_table(anchor: Anchor | str | None) -> Checked:
    """No audit table: a break when an anchor says there were events (or the anchor is unreadable)."""
    if isinstance(anchor, Anchor):
        return 0, ChainBreak(0, "(missing)", (
            f"the audit table is missing, but the anchor outside it records {anchor.seq + 1} event(s) "
            f"at table version {anchor.version}"
        ))
    if isinstance(anchor, str):
        return 0, ChainBreak(0, "(anchor)", anchor)
    return 0, None


def check_links(rows: Sequence[Mapping[str, Any]], *, first: int = 0, prev: str = GENESIS) -> Checked | None:
    """Rows sorted by seq: consecutive seqs from ``first`` (0: the whole chain), the first linked to ``prev``
    (the hash of event ``first - 1``; 64 zeros before event 0) and each to the previous hash, each hash its
    content's."""
    for expected_seq, row in enumerate(rows, start=first):
        if row["seq"] != expected_seq:
            why = "missing event before it" if row["seq"] > expected_seq else "sequence number repeated"
            return expected_seq, ChainBreak(row["seq"], row["event_id"], why)
        if row["prev_hash"] != prev:
            why = "previous-hash link broken (an event removed or reordered)"
            return expected_seq, ChainBreak(row["seq"], row["event_id"], why)
        if chain_hash(prev, row) != row["hash"]:
            return expected_seq, ChainBreak(row["seq"], row["event_id"], "content altered (hash mismatch)")
        prev = row["hash"]
    return None


def check_end(rows: Sequence[Mapping[str, Any]], recorded: tuple[int, str] | None) -> Checked | None:
    """The chain's end against the (seq, hash) the newest append recorded in its Delta commit info."""
    if recorded is None:
        return None
    n = len(rows)
    last_seq, last_hash = recorded
    if last_seq >= n:
        return n, ChainBreak(
            n, "(missing)", f"events seq {n}..{last_seq} removed from the end (the last append recorded seq {last_seq})"
        )
    if rows[last_seq]["hash"] != last_hash:
        return last_seq, ChainBreak(
            last_seq, rows[last_seq]["event_id"], "does not match the hash its append recorded in the Delta log"
        )
    if last_seq != n - 1:
        extra = rows[last_seq + 1]
        why = "appended outside dsr (no audit append recorded it)"
        return last_seq + 1, ChainBreak(extra["seq"], extra["event_id"], why)
    return None


def check_anchor(table_id: str, version: int, rows: Sequence[Mapping[str, Any]], anchor: Anchor) -> Checked:
    """The table (its Delta id, version and rows) against the newest anchor outside it, which may be behind the
    chain's end, never ahead."""
    n = len(rows)
    if table_id != anchor.table_id:
        first = rows[0]["event_id"] if rows else "(missing)"
        return 0, ChainBreak(0, first, (
            f"the audit table was replaced: its Delta table id is not the one the anchor outside it records "
            f"(at version {anchor.version})"
        ))
    if version < anchor.version:
        gone = anchor.version - version
        commits = (f"Delta commit{'s' if gone > 1 else ''} {_span(version + 1, anchor.version)} of the audit table "
                   f"{'are' if gone > 1 else 'is'} missing")
        recorded = (f"the anchor outside the table records seq {anchor.seq} at version {anchor.version}; "
                    f"the table is at version {version}")
        if anchor.seq >= n:
            return n, ChainBreak(n, "(missing)", f"events seq {_span(n, anchor.seq)} removed from the end: {commits} "
                                                 f"({recorded})")
        return n, ChainBreak(n, "(missing)", f"{commits} ({recorded})")
    if anchor.seq >= n:
        return n, ChainBreak(n, "(missing)", (
            f"events seq {_span(n, anchor.seq)} removed from the end (the anchor outside the audit table records "
            f"seq {anchor.seq} at version {anchor.version})"
        ))
    if anchor.seq >= 0 and rows[anchor.seq]["hash"] != anchor.hash:
        return anchor.seq, ChainBreak(anchor.seq, rows[anchor.seq]["event_id"], (
            f"does not match the hash the anchor outside the audit table records (at version {anchor.version})"
        ))
    return n, None
