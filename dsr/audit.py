"""The append-only, hash-chained audit log ``<lake>/<control>/audit`` (Delta).

Each row is one event. ``hash = sha256(prev_hash + "\\n" + canonical JSON of the event)``; the first event's
prev_hash is 64 zeros. Appends commit with no silent rebase, so the chain stays one line even with
concurrent writers (a writer that loses the race re-reads the tail and tries again). Each append also records
the (seq, hash) of the chain's new end in its Delta commit info, so ``verify_chain`` notices events removed
from the end, which the links alone cannot show.
Events hold request ids, run ids, table names and metrics — never subject ids.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsr import deltautil
from dsr.policy import Policy

__all__ = ["EVENTS", "GENESIS", "AuditEvent", "ChainBreak", "append", "canonical", "events", "verify_chain"]

GENESIS = "0" * 64
_ANCHOR_SEQ = "dsr.audit.last_seq"
_ANCHOR_HASH = "dsr.audit.last_hash"
EVENTS = (
    "received", "claimed", "released", "table_exported", "exported", "table_erased", "table_retained",
    "table_failed", "verified", "completed", "failed",
)


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("request_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("table_name", pa.string()),
        pa.field("details", pa.string()),
        pa.field("prev_hash", pa.string(), nullable=False),
        pa.field("hash", pa.string(), nullable=False),
    ])


@dataclass(frozen=True)
class AuditEvent:
    event: str
    request_id: str | None = None
    run_id: str | None = None
    table_name: str | None = None
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    event_id: str
    why: str


def canonical(row: Mapping[str, Any]) -> str:
    """The canonical JSON text of an event row (everything but the hashes)."""
    body = {k: row[k] for k in ("seq", "event_id", "at", "event", "request_id", "run_id", "table_name", "details")}
    at = body["at"]
    if isinstance(at, dt.datetime):
        body["at"] = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _hash(prev: str, row: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev + "\n" + canonical(row)).encode("utf-8")).hexdigest()


def _open(policy: Policy) -> Any:
    return deltautil.create_if_missing(
        policy.audit_uri, _schema(), name="dsr_audit", description="dsr-lake hash-chained audit log"
    )


def _tail(table: Any) -> tuple[int, str]:
    import pyarrow.compute as pc

    data = deltautil.read_all(table, columns=["seq", "hash"])
    if data.num_rows == 0:
        return -1, GENESIS
    i = pc.index(data["seq"], pc.max(data["seq"])).as_py()
    return int(data["seq"][i].as_py()), str(data["hash"][i].as_py())


def append(policy: Policy, batch: Sequence[AuditEvent], *, now: dt.datetime | None = None) -> list[str]:
    """Append events to the chain in one commit. Returns their event ids."""
    import pyarrow as pa
    from deltalake import write_deltalake

    if not batch:
        return []
    table = _open(policy)
    at = now or dt.datetime.now(dt.UTC)
    # Stored as UTC microseconds: hash exactly what will be read back (a naive time means UTC).
    at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
    ids = [uuid.uuid4().hex for _ in batch]

    def attempt() -> list[str]:
        table.update_incremental()
        seq, prev = _tail(table)
        rows = []
        for event_id, ev in zip(ids, batch, strict=True):
            if ev.event not in EVENTS:
                raise ValueError(f"unknown audit event {ev.event!r}")
            seq += 1
            row: dict[str, Any] = {
                "seq": seq,
                "event_id": event_id,
                "at": at,
                "event": ev.event,
                "request_id": ev.request_id,
                "run_id": ev.run_id,
                "table_name": ev.table_name,
                "details": json.dumps(dict(ev.details or {}), sort_keys=True, separators=(",", ":"), default=str),
            }
            row["prev_hash"] = prev
            row["hash"] = prev = _hash(prev, row)
            rows.append(row)
        write_deltalake(
            table,
            pa.Table.from_pylist(rows, schema=_schema()),
            mode="append",
            commit_properties=deltautil.commit_properties(
                {"dsr.component": "audit", _ANCHOR_SEQ: str(seq), _ANCHOR_HASH: prev}
            ),
        )
        return ids

    return deltautil.optimistic(attempt, what="audit append")


def _read(policy: Policy, request_ids: Sequence[str] | None) -> list[dict[str, Any]]:
    """Audit rows (of the given requests, or all), in chain order, details decoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = deltautil.open_table(policy.audit_uri)
    if table is None or request_ids == []:
        return []
    data = deltautil.read_all(table)
    if request_ids is not None:
        data = data.filter(pc.is_in(data["request_id"], value_set=pa.array(request_ids, pa.string())))
    rows = sorted(data.to_pylist(), key=lambda r: r["seq"])
    for r in rows:
        r["details"] = json.loads(r["details"]) if r["details"] else {}
    return rows


def events(policy: Policy, *, request_id: str | None = None) -> list[dict[str, Any]]:
    """Every audit row (optionally of one request), in chain order, details decoded."""
    return _read(policy, None if request_id is None else [request_id])


def events_by_request(policy: Policy, request_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The audit rows of several requests, read in one pass: request id -> rows in chain order."""
    wanted = sorted(set(request_ids))
    out: dict[str, list[dict[str, Any]]] = {rid: [] for rid in wanted}
    for r in _read(policy, wanted):
        out[r["request_id"]].append(r)
    return out


def _anchor(table: Any, depth: int = 100) -> tuple[int, str] | None:
    """(seq, hash) of the chain's end as recorded in the newest audit append's commit info, if any."""
    for commit in table.history(depth):
        if _ANCHOR_SEQ in commit and _ANCHOR_HASH in commit:
            try:
                return int(commit[_ANCHOR_SEQ]), str(commit[_ANCHOR_HASH])
            except (TypeError, ValueError):
                return None
    return None


def verify_chain(policy: Policy) -> tuple[int, ChainBreak | None]:
    """Recompute the chain. Returns (events checked, first break or None).

    Besides the links between rows, the end of the chain is checked against the (seq, hash) that the newest
    append recorded in its Delta commit info, so events removed from the end are found too.
    """
    table = deltautil.open_table(policy.audit_uri)
    if table is None:
        return 0, None
    rows = sorted(deltautil.read_all(table).to_pylist(), key=lambda r: (r["seq"], r["event_id"]))
    prev = GENESIS
    for expected_seq, row in enumerate(rows):
        if row["seq"] != expected_seq:
            why = "missing event before it" if row["seq"] > expected_seq else "sequence number repeated"
            return expected_seq, ChainBreak(row["seq"], row["event_id"], why)
        if row["prev_hash"] != prev:
            why = "previous-hash link broken (an event removed or reordered)"
            return expected_seq, ChainBreak(row["seq"], row["event_id"], why)
        if _hash(prev, row) != row["hash"]:
            return expected_seq, ChainBreak(row["seq"], row["event_id"], "content altered (hash mismatch)")
        prev = row["hash"]
    anchor = _anchor(table)
    if anchor is not None:
        last_seq, last_hash = anchor
        if last_seq >= len(rows):
            return len(rows), ChainBreak(
                len(rows), "(missing)",
                f"events seq {len(rows)}..{last_seq} removed from the end (the last append recorded seq {last_seq})",
            )
        if rows[last_seq]["hash"] != last_hash:
            return last_seq, ChainBreak(
                last_seq, rows[last_seq]["event_id"], "does not match the hash its append recorded in the Delta log"
            )
        if last_seq != len(rows) - 1:
            extra = rows[last_seq + 1]
            return last_seq + 1, ChainBreak(
                extra["seq"], extra["event_id"], "appended outside dsr (no audit append recorded it)"
            )
    return len(rows), None
