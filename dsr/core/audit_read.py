"""Reads of the audit log by filter: a request's or a run's events, or some kinds of event over the history, never
the whole log unless asked (``events`` without a request)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from dsr.core.audit_details import decoded
from dsr.core.audit_schema import schema
from dsr.core.policy import Policy
from dsr.delta import tables as deltautil

__all__ = ["SKEW", "event_columns", "events", "events_by_request", "events_read", "log_version"]


SKEW = dt.timedelta(days=1)
"""How far an event's time may be behind its request's ``received_at`` (writers' clocks differ): reads of a
request's events start this much before it was received."""


def _read(
    policy: Policy, request_ids: Sequence[str] | None, since: dt.datetime | None = None, after_seq: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Audit rows (of the given requests, or all), in chain order, details decoded, and the version of the log
    they were read at (-1: no log yet). With ``since`` (the oldest of the requests' ``received_at``), files
    whose events all predate it by more than :data:`SKEW` are skipped by their statistics: the read stays flat
    as the log grows."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    table = deltautil.open_table(policy.audit_uri)
    if table is None:
        return [], -1
    version = int(table.version())
    if request_ids == []:
        return [], version
    recent = None if since is None else ds.field("at") >= pa.scalar(since - SKEW, pa.timestamp("us", tz="UTC"))
    if after_seq is not None:  # the chain's order: files whose events all come before are skipped
        newer = ds.field("seq") > pa.scalar(after_seq, pa.int64())
        recent = newer if recent is None else recent & newer
    data = (deltautil.read_all(table) if request_ids is None
            else deltautil.read_where(table, "request_id", request_ids, also=recent))
    return decoded(data.sort_by([("seq", "ascending")])), version


def events(policy: Policy, *, request_id: str | None = None) -> list[dict[str, Any]]:
    """Every audit row (optionally of one request), in chain order, details decoded."""
    return _read(policy, None if request_id is None else [request_id])[0]


def event_columns(
    policy: Policy, kinds: Sequence[str], *, request_ids: Sequence[str] | None = None,
    since: dt.datetime | None = None,
) -> Any:
    """The audit rows of the given events as a pyarrow Table of seq, at, event, request_id, run_id, table_name
    and details (raw JSON text): a projected, filtered read for questions asked over the whole history in Arrow
    (no hashes: the chain is :func:`verify_chain`'s business); only those of ``request_ids``, and only those
    at or after ``since`` (files of older events are skipped by their statistics), when given."""
    import pyarrow as pa

    columns = ["seq", "at", "event", "request_id", "run_id", "table_name", "details"]
    table = deltautil.open_table(policy.audit_uri)
    if table is None:
        return schema().empty_table().select(columns)
    import pyarrow.dataset as ds

    recent = None if since is None else ds.field("at") >= pa.scalar(since, pa.timestamp("us", tz="UTC"))
    if request_ids is None:
        data = deltautil.read_where(table, "event", kinds, columns=columns, also=recent)
    else:  # the events of some requests: their ids first, then the kinds
        kinds_of = ds.field("event").isin(pa.array(list(kinds), pa.string()))
        data = deltautil.read_where(table, "request_id", request_ids, columns=columns,
                                    also=kinds_of if recent is None else kinds_of & recent)
    return data.cast(pa.schema([schema().field(c) for c in columns]))


def events_by_request(
    policy: Policy, request_ids: Iterable[str], *, since: dt.datetime | None = None, after_seq: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The audit rows of several requests, read in one pass: request id -> rows in chain order. ``since``: the
    oldest ``received_at`` of the requests (their events are not older, give or take :data:`SKEW`);
    ``after_seq``: only the events after that point of the chain (to bring an earlier read up to date)."""
    return events_read(policy, request_ids, since=since, after_seq=after_seq)[0]


def events_read(
    policy: Policy, request_ids: Iterable[str], *, since: dt.datetime | None = None, after_seq: int | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """:func:`events_by_request`, and the version of the log it read (-1: no log yet)."""
    wanted = sorted(set(request_ids))
    out: dict[str, list[dict[str, Any]]] = {rid: [] for rid in wanted}
    rows, version = _read(policy, wanted, since, after_seq)
    for r in rows:
        out[r["request_id"]].append(r)
    return out, version


def log_version(policy: Policy) -> int:
    """The audit log's current version (-1: no log yet): whether anything was appended since a read."""
    table = deltautil.open_table(policy.audit_uri)
    return -1 if table is None else int(table.version())
