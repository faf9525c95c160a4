"""Where each table stands with past erasures: which are applied to it, where its last sweep left off.

Pure functions of the policy and the audit events (no I/O). An erasure is applied to a table when the table has
its ``table_erased`` (or ``table_retained``) event under the table's current erase spec, or when a full sweep of
the table under that spec ran after the erasure completed. A table with completed erasures not applied to it
(added to the policy later, its strategy, subject column or masks changed since) is *pending its first sweep*:
not covered until a full sweep. Otherwise a sweep is incremental, from the version its last sweep checked (or
from an erase commit of an erasure completed since, whichever is older).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core.identifiers import IMPLICIT
from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec
from dsr.errors import InputError

__all__ = ["SWEEP_ID", "TableState", "check_sweep_id", "new_sweep_id", "spec_of", "states", "sweep_id_for",
           "sweep_started"]

SWEEP_ID = re.compile(r"swp_[0-9a-f]{16}")


def new_sweep_id() -> str:
    return "swp_" + uuid.uuid4().hex[:16]


def sweep_id_for(run_id: str) -> str:
    """The sweep id of an Airflow DAG run (every task of the run derives the same one)."""
    return "swp_" + hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:16]


def check_sweep_id(text: str) -> str:
    if not SWEEP_ID.fullmatch(text):
        raise InputError("not a sweep id (swp_ followed by 16 hex digits)")
    return text


def spec_of(table: TableSpec) -> str:
    """A fingerprint of what erasing means in a table (strategy, subject column, masks; and, for a table whose
    subject columns are more than one implicit owner column, each column's kind, role and masks): 16 hex
    digits. A table of one implicit column keeps the fingerprint it had before kinds existed."""
    parts: list[Any] = [str(table.erase), table.subject, [[c, repr(m)] for c, m in table.masks]]
    cols = table.subject_columns
    if len(cols) > 1 or cols[0].kind != IMPLICIT or not cols[0].owner:
        parts.append([[c.column, c.kind, c.role, [[m, repr(x)] for m, x in c.masks]] for c in cols])
    text = json.dumps(parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class TableState:
    """One table's standing: the erasures not applied to it (pending its first sweep when any), and where an
    incremental sweep starts (None: a full sweep)."""

    table: str
    spec: str
    unapplied: list[str] = field(default_factory=list)  # completed erasures (request ids) not applied here
    since: int | None = None  # the version an incremental sweep reads new files from
    last_sweep: str | None = None  # when the last sweep under this spec ran (ISO)

    @property
    def pending_first_sweep(self) -> bool:
        return bool(self.unapplied)


def _applied(events: Sequence[Mapping[str, Any]], table: TableSpec, spec: str) -> bool:
    for e in events:
        if e["table_name"] != table.name or e["event"] not in ("table_erased", "table_retained"):
            continue
        d = e["details"]
        if d.get("spec") == spec or (d.get("spec") is None and d.get("strategy") == str(table.erase)):
            return True
    return False


def sweep_started(event: Mapping[str, Any]) -> dt.datetime:
    """When a sweep loaded the suppression list (an erasure completed later was not in it)."""
    started = event["details"].get("started_at")
    return dt.datetime.fromisoformat(started) if started else event["at"]


def states(policy: Policy, erasures: Iterable[str], events: Sequence[Mapping[str, Any]]) -> dict[str, TableState]:
    """The state of every delete/anonymise table, given the completed erasures' request ids and every audit
    event (request rows and sweep rows alike)."""
    by_request: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        by_request.setdefault(e["request_id"], []).append(e)
    completed: dict[str, dt.datetime] = {}
    for rid in erasures:
        done = [e["at"] for e in by_request.get(rid, []) if e["event"] == "completed"]
        completed[rid] = max(done) if done else dt.datetime.min.replace(tzinfo=dt.UTC)
    out: dict[str, TableState] = {}
    for table in policy.tables:
        if table.erase is Strategy.RETAIN:
            continue
        spec = spec_of(table)
        sweeps = [e for e in events if e["event"] == "table_swept" and e["table_name"] == table.name
                  and e["details"].get("spec") == spec and e["details"].get("success", True)]
        full = [sweep_started(e) for e in sweeps if e["details"].get("mode") == "full"]
        state = TableState(table.name, spec)
        for rid, at in completed.items():
            if not _applied(by_request.get(rid, []), table, spec) and not any(f >= at for f in full):
                state.unapplied.append(rid)
        if sweeps and not state.unapplied:
            last = sweeps[-1]
            state.last_sweep = last["at"].isoformat()
            since = int(last["details"]["checked_version"])
            for rid, at in completed.items():  # completed since: their rows may have come back after the erase
                if at >= sweep_started(last):
                    versions = [int(e["details"]["version_after"]) for e in by_request.get(rid, [])
                                if e["table_name"] == table.name and e["event"] == "table_erased"]
                    since = min([since, *versions])
            state.since = since
        out[table.name] = state
    return out
