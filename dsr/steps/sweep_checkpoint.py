"""Coverage checkpoints: the check for tables pending their first sweep stays flat as the history grows.

Every ``dsr run`` asks which tables are pending their first sweep (:mod:`dsr.steps.sweep_pending`). Over a long
history the answer is nearly always "none", and proving it reads every completed erasure's events. A checkpoint
keeps that proof: one ``coverage_checked`` audit event per delete/anonymise table, under the table's current
spec, saying that every erasure completed at or before ``through`` is applied to the table. The run writes it
only when the full check found nothing pending, with ``through`` = when the check started reading, less
:data:`SKEW` (every erasure completed by then was in what it read, whatever the writers' clocks), and at most
once per :data:`INTERVAL`. A checkpoint covers like a successful full sweep (the same rule, in
``sweep_pending``). With a checkpoint for every table under its current spec, the check reads only the erasures
changed since the oldest one (less :data:`SKEW`) and their events; a table added to the policy, or whose spec
changed, has none, and the full check runs. The events are in the hash chain like any other.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from dsr.core.masks import Strategy
from dsr.core.policy import Policy
from dsr.steps.sweep_state import spec_of

__all__ = ["INTERVAL", "RECENT", "SKEW", "covered_through", "due", "record"]

SKEW = dt.timedelta(days=1)
"""How far the clocks of dsr's writers may disagree."""
INTERVAL = dt.timedelta(days=1)
"""A run writes a new checkpoint when the newest is older than this."""
RECENT = INTERVAL + 3 * SKEW
"""How far back the check first looks for checkpoints and sweeps (files of older events are skipped). A
checkpoint found there covers the erasures completed since it, less SKEW; every sweep that could cover one of
those started later, so is in the window too. With none (or too old), the check reads them all."""


def covered_through(policy: Policy, rows: Any) -> dt.datetime | None:
    """The oldest, over the delete/anonymise tables, of each one's newest checkpoint under its current spec;
    None when a table has none (or there is no such table). ``rows``: audit rows (Arrow) of any events. Pure."""
    import pyarrow.compute as pc

    tables = [t for t in policy.tables if t.erase is not Strategy.RETAIN]
    marks = rows.filter(pc.equal(rows["event"], "coverage_checked")).to_pylist()
    newest: list[dt.datetime] = []
    for table in tables:
        spec = spec_of(table)
        through = [dt.datetime.fromisoformat(d["through"]) for d in
                   (json.loads(r["details"]) for r in marks if r["table_name"] == table.name)
                   if d.get("spec") == spec and d.get("through")]
        if not through:
            return None
        newest.append(max(through))
    return min(newest, default=None)


def due(since: dt.datetime | None, now: dt.datetime) -> bool:
    """A new checkpoint is due: none covers every table, or the newest is older than :data:`INTERVAL`."""
    return since is None or now - SKEW - since >= INTERVAL


def record(policy: Policy, started: dt.datetime) -> None:
    """Append one checkpoint per delete/anonymise table (in one audit commit)."""
    from dsr.core import audit

    through = (started - SKEW).isoformat()
    audit.append(policy, [
        audit.AuditEvent("coverage_checked", table_name=t.name, details={"spec": spec_of(t), "through": through})
        for t in policy.tables if t.erase is not Strategy.RETAIN
    ])
