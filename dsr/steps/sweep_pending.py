"""Which tables are pending their first sweep, counted over the audit log's columns (Arrow), not event by event.

The same rule as :func:`dsr.steps.sweep_state.states` (a completed erasure is applied to a table when the table
has its ``table_erased`` or ``table_retained`` event under the table's current spec — or, for events older than
specs, under its strategy — or when a successful full sweep under that spec started after the erasure completed),
asked by every ``dsr run``, ``dsr check`` and ``dsr requests``. Those must not slow down as the history grows:
the control table is read as three columns, the audit log as the rows of four events (projected), and the
comparison is done on Arrow arrays; only the few ``table_swept`` rows become Python objects.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dsr.core.audit_details import decoded
from dsr.core.masks import Strategy
from dsr.core.policy import Policy
from dsr.steps.sweep_state import TableState, spec_of, states, sweep_started

__all__ = ["COVERAGE", "EVENTS", "pending_tables", "reduced_states", "table_states", "unapplied"]

EVENTS = ("completed", "table_erased", "table_retained", "table_swept")
"""The audit events the rule reads."""
COVERAGE = "coverage_checked"
"""A checkpoint of the rule (:mod:`dsr.steps.sweep_checkpoint`): covers like a full sweep."""


def pending_tables(policy: Policy, *, record: bool = False) -> dict[str, int]:
    """Tables pending their first sweep -> how many completed erasures are not applied to them (reads the
    control table and the audit log; no key needed). With a coverage checkpoint for every table under its
    current spec, only the erasures completed since are read (:mod:`dsr.steps.sweep_checkpoint`); ``record``
    (``dsr run``) writes a new checkpoint when nothing is pending and the newest is a day old or missing."""
    import pyarrow as pa

    from dsr.core import audit, control
    from dsr.steps import sweep_checkpoint as marks

    started = dt.datetime.now(dt.UTC)
    window = started - marks.RECENT
    seen = audit.event_columns(policy, ("table_swept", COVERAGE), since=window)  # files of older events skipped
    since = marks.covered_through(policy, seen)
    if since is None or since - marks.SKEW < window:  # no recent checkpoint: every sweep and checkpoint counts
        seen = audit.event_columns(policy, ("table_swept", COVERAGE))
        since = marks.covered_through(policy, seen)
    erasures, oldest = control.request_ids_received(
        policy, status="completed", kind="erase", updated_since=None if since is None else since - marks.SKEW)
    if erasures and since is None:
        events = audit.event_columns(policy, (*EVENTS, COVERAGE))
    elif erasures and oldest is not None:  # a request's events are not older than it (give or take the skew)
        events = pa.concat_tables([
            audit.event_columns(policy, EVENTS, request_ids=erasures, since=oldest - marks.SKEW), seen])
    found = {n: c for n, c in unapplied(policy, erasures, events).items() if c} if erasures else {}
    if record and not found and marks.due(since, started):
        marks.record(policy, started)
    return found


def _details(column: Any) -> Any:
    """The ``spec`` and ``strategy`` of every details JSON text."""
    import pyarrow as pa

    from dsr.core.audit_details import fields_of

    return fields_of(column, pa.schema([("spec", pa.string()), ("strategy", pa.string())]))


def _last_full_sweep(events: Any, table: str, spec: str) -> dt.datetime | None:
    """When the newest successful full sweep of the table under the spec loaded its suppression list, or the
    newest coverage checkpoint under the spec was proven through (:mod:`dsr.steps.sweep_checkpoint`), whichever
    is later: every erasure completed by then is applied to the table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kinds = pa.array(["table_swept", COVERAGE])
    rows = events.filter(pc.and_(pc.is_in(events["event"], kinds), pc.equal(events["table_name"], table)))
    starts = []
    for r in decoded(rows):
        d = r["details"]
        if d.get("spec") != spec:
            continue
        if r["event"] == COVERAGE and d.get("through"):
            starts.append(dt.datetime.fromisoformat(d["through"]))
        elif r["event"] == "table_swept" and d.get("success", True) and d.get("mode") == "full":
            starts.append(sweep_started(r))
    return max(starts, default=None)


def _missing(policy: Policy, ids: Any, events: Any) -> tuple[dict[str, Any], Any]:
    """Per delete/anonymise table, a boolean array over ``ids``: the erasure is not applied to the table; and
    every erasure's completion time (its newest ``completed`` event; the dawn of time when it has none)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    done = events.filter(pc.and_(pc.equal(events["event"], "completed"), pc.is_in(events["request_id"], ids)))
    latest = done.group_by("request_id").aggregate([("at", "max")])
    at_type = events.schema.field("at").type
    completed_at = pc.take(latest["at_max"], pc.index_in(ids, value_set=latest["request_id"]))
    completed_at = completed_at.fill_null(pa.scalar(dt.datetime.min.replace(tzinfo=dt.UTC), at_type))
    out: dict[str, Any] = {}
    for table in policy.tables:
        if table.erase is Strategy.RETAIN:
            continue
        spec = spec_of(table)
        mine = events.filter(pc.and_(pc.equal(events["table_name"], table.name),
                                     pc.is_in(events["event"], pa.array(["table_erased", "table_retained"]))))
        details = _details(mine["details"])
        legacy = pc.and_(pc.is_null(details["spec"]), pc.equal(details["strategy"], str(table.erase)))
        # Kleene logic: a legacy event's spec is null, and a null must not hide its strategy's match
        applied = mine["request_id"].filter(
            pc.fill_null(pc.or_kleene(pc.equal(details["spec"], spec), legacy), False))
        missing = pc.invert(pc.is_in(ids, pa.array(applied.to_pylist(), pa.string()).unique()))
        full = _last_full_sweep(events, table.name, spec)
        if full is not None:
            missing = pc.and_(missing, pc.greater(completed_at, pa.scalar(full, at_type)))
        out[table.name] = missing
    return out, completed_at


def unapplied(policy: Policy, erasures: list[str], events: Any) -> dict[str, int]:
    """Delete/anonymise table -> how many of the completed erasures (request ids) are not applied to it, given
    the audit rows of :data:`EVENTS` (columns at, event, request_id, table_name, details). Pure."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing, _ = _missing(policy, pa.array(erasures, pa.string()), events)
    return {name: int(pc.sum(pc.cast(m, pa.int64())).as_py() or 0) for name, m in missing.items()}


def _last_sweep_start(policy: Policy, rows: list[dict[str, Any]]) -> dt.datetime | None:
    """The oldest, over the tables, of when each table's newest successful sweep under its spec started (the
    erasures completed since can move that table's incremental start); None when no table has one."""
    starts = []
    for table in policy.tables:
        spec = spec_of(table)
        mine = [r for r in rows if r["table_name"] == table.name and r["details"].get("spec") == spec
                and r["details"].get("success", True)]
        if mine:
            starts.append(sweep_started(mine[-1]))
    return min(starts, default=None)


def reduced_states(policy: Policy, erasures: list[str], events: Any) -> dict[str, TableState]:
    """:func:`~dsr.steps.sweep_state.states` of every table, decoding only the events that can matter: every
    sweep, and those of the erasures not applied to some table or completed since a table's last sweep. The
    others are applied everywhere and older than every last sweep, so they change no table's state. ``events``
    as for :func:`unapplied`, plus ``seq`` (chain order). Pure."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(erasures, pa.string())
    missing, completed_at = _missing(policy, ids, events)
    relevant = pa.array([False] * len(ids), pa.bool_())
    for m in missing.values():
        relevant = pc.or_(relevant, m)
    events = events.sort_by([("seq", "ascending")])
    swept = events.filter(pc.equal(events["event"], "table_swept"))
    since = _last_sweep_start(policy, decoded(swept))
    if since is not None:
        relevant = pc.or_(relevant, pc.greater_equal(completed_at, pa.scalar(since, completed_at.type)))
    keep = ids.filter(relevant)
    rows = events.filter(pc.or_(pc.equal(events["event"], "table_swept"), pc.is_in(events["request_id"], keep)))
    return states(policy, keep.to_pylist(), decoded(rows))


def table_states(policy: Policy, erasures: list[str]) -> dict[str, TableState]:
    """Every table's state for the completed erasures (request ids), read as :func:`reduced_states` needs."""
    from dsr.core import audit

    return reduced_states(policy, erasures, audit.event_columns(policy, EVENTS))
