"""The backlog at a glance (``dsr status``, the DAG's ``check_deadlines``): a pure function of the control table's
rows and the audit log's rows, read once each by :func:`load`.

Holds request ids, kinds, statuses, table names, times and counts; never a subject id (the request rows' subject
column is not looked at, and their error texts were scrubbed of subject ids when written).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core.policy import Policy
from dsr.core.requests import KINDS, STATUSES, Request, is_open
from dsr.steps.purge import purge_states_of

__all__ = ["REPEATED", "SOON_DAYS", "Status", "TableHealth", "load", "summarise"]

SOON_DAYS = 7  # "due within" for dsr status
REPEATED = 2  # a table failing in this many runs in a row, with no success since, is failing repeatedly
_SUCCESS = ("table_exported", "table_erased", "table_retained")


@dataclass
class TableHealth:
    """One table of the policy: its last erase (when, by which run), last sweep, failures since its last success."""

    table: str
    strategy: str
    last_erase_at: dt.datetime | None = None
    last_erase_run: str | None = None
    last_sweep_at: dt.datetime | None = None
    failures_total: int = 0
    failing_runs: list[str] = field(default_factory=list)  # runs that failed here since the last success
    last_failure: str | None = None  # its reason (names tables and request ids, never subjects)
    pending_first_sweep: int = 0  # completed erasures not applied here yet

    @property
    def failing_repeatedly(self) -> bool:
        return len(self.failing_runs) >= REPEATED

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("last_erase_at", "last_sweep_at"):
            out[k] = out[k].isoformat() if out[k] is not None else None
        return {**out, "failing_repeatedly": self.failing_repeatedly}


@dataclass
class Status:
    now: dt.datetime
    soon_days: int
    counts: dict[tuple[str, str], int]  # (kind, status) -> requests
    oldest_open: dict[str, Any] | None  # request_id, kind, age_seconds
    overdue: list[dict[str, Any]]
    due_soon: list[dict[str, Any]]
    failed: list[dict[str, Any]]  # request_id, kind, attempts, final, error
    purges_due: list[str]
    purges_overdue: list[str]
    tables: list[TableHealth]
    last_completed: dict[str, Any] | None  # run_id, at

    @property
    def failed_final(self) -> list[dict[str, Any]]:
        return [f for f in self.failed if f["final"]]

    @property
    def exit_code(self) -> int:
        """1 when anything is overdue (a request or its purge) or failed beyond its attempts."""
        return 1 if self.overdue or self.failed_final or self.purges_overdue else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(), "soon_days": self.soon_days,
            "counts": [{"kind": k, "status": s, "requests": n} for (k, s), n in sorted(self.counts.items())],
            "oldest_open": self.oldest_open, "overdue": self.overdue, "due_soon": self.due_soon,
            "failed": self.failed, "purges_due": self.purges_due, "purges_overdue": self.purges_overdue,
            "tables": [t.as_dict() for t in self.tables],
            "last_completed": self.last_completed, "exit_code": self.exit_code,
        }


def _deadline(r: Request, now: dt.datetime) -> dict[str, Any]:
    return {"request_id": r.request_id, "kind": r.kind, "status": r.status, "due_at": r.due_at.isoformat(),
            "days_left": round((r.due_at - now).total_seconds() / 86400, 1), "attempts": r.attempts,
            "error": r.error}


def _tables(policy: Policy, events: Sequence[Mapping[str, Any]]) -> list[TableHealth]:
    """Each policy table's health from the audit rows (chain order), in one pass over them."""
    out = {t.name: TableHealth(t.name, str(t.erase)) for t in policy.tables}
    for e in events:
        health = out.get(e["table_name"] or "")
        if health is None:
            continue
        ev, d = e["event"], e["details"]
        failed = ev == "table_failed" or (ev == "table_swept" and (d.get("error") or d.get("success") is False))
        if failed:
            health.failures_total += 1
            if e["run_id"] not in health.failing_runs:
                health.failing_runs.append(e["run_id"])
            health.last_failure = d.get("reason") or d.get("error") or "verification failed"
        elif ev in _SUCCESS or ev == "table_swept":
            health.failing_runs, health.last_failure = [], None
            if ev == "table_swept" and not d.get("dry_run"):
                health.last_sweep_at = e["at"]
            elif ev in ("table_erased", "table_retained"):
                health.last_erase_at, health.last_erase_run = e["at"], e["run_id"]
    return list(out.values())


def summarise(policy: Policy, requests: Sequence[Request], events: Sequence[Mapping[str, Any]], now: dt.datetime,
              *, soon_days: int = SOON_DAYS, pending_sweeps: Mapping[str, int] | None = None,
              counts: Mapping[tuple[str, str], int] | None = None,
              failures_total: Mapping[str, int] | None = None) -> Status:
    """The status of the lake from every request row and every audit row (chain order), or from the rows
    :mod:`dsr.steps.status_read` keeps with the counts it took over all of them (``counts``, ``failures_total``).
    Pure."""
    tally: Counter[tuple[str, str]] = Counter({(k, s): 0 for k in KINDS for s in STATUSES})
    tally.update(counts if counts is not None else Counter((r.kind, r.status) for r in requests))
    open_ = sorted((r for r in requests if is_open(r, policy)), key=lambda r: (r.received_at, r.request_id))
    oldest = ({"request_id": open_[0].request_id, "kind": open_[0].kind,
               "age_seconds": int((now - open_[0].received_at).total_seconds())} if open_ else None)
    soon = now + dt.timedelta(days=soon_days)
    overdue = [_deadline(r, now) for r in requests if r.overdue(now)]
    due_soon = [_deadline(r, now) for r in requests if r.status != "completed" and now <= r.due_at < soon]
    failed = [{"request_id": r.request_id, "kind": r.kind, "attempts": r.attempts,
               "final": r.attempts >= policy.max_attempts, "error": r.error}
              for r in requests if r.status == "failed"]
    by_request: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        if e["request_id"]:
            by_request.setdefault(e["request_id"], []).append(e)
    purges = purge_states_of(policy, requests, by_request, now)
    due = sorted(rid for rid, p in purges.items() if p["state"] == "due" and p["at"] <= now.isoformat())
    late = sorted(rid for rid, p in purges.items() if p["state"] == "due" and p.get("overdue"))
    tables = _tables(policy, events)
    for t in tables:
        t.pending_first_sweep = int((pending_sweeps or {}).get(t.table, 0))
        if failures_total is not None:
            t.failures_total = int(failures_total.get(t.table, 0))
    done = [e for e in events if e["event"] == "completed"]
    last = {"run_id": done[-1]["run_id"], "at": done[-1]["at"].isoformat()} if done else None
    return Status(now, soon_days, dict(tally), oldest, overdue, due_soon, failed, due, late, tables, last)


def load(policy: Policy, now: dt.datetime | None = None, *, soon_days: int = SOON_DAYS) -> Status:
    """Read the control table once and the audit log once (as columns, cut to the rows that can change the
    answer: :mod:`dsr.steps.status_read`), then :func:`summarise`."""
    from dsr.steps import status_read
    from dsr.steps.sweep_pending import unapplied

    at = now or dt.datetime.now(dt.UTC)
    got = status_read.read(policy)
    pending = unapplied(policy, got.erasures, got.table_events) if got.erasures else {}
    return summarise(policy, got.requests, got.events, at, soon_days=soon_days, pending_sweeps=pending,
                     counts=got.counts, failures_total=got.failures_total)

