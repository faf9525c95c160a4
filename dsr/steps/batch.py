"""The batch a run holds: its requests, read once per step, and their audit events, read by filter.

Each step of a run (an in-process ``dsr run`` step, or an Airflow task in its own process) rebuilds the batch
with :meth:`Batch.load` — one filtered read of the control table (the rows of this run), never the whole
table — and reads the audit events of its requests with a filter, never the whole log. The lease is renewed
by time (when less than half of ``claim_ttl_minutes`` is left), not by every step.

Also here: what every step shares — recording a table a step could not process, and keeping subject ids out
of error texts.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core import audit, control, lease
from dsr.core.audit_details import decoded, decoded_rows
from dsr.core.policy import Policy, TableSpec
from dsr.delta import access
from dsr.delta import tables as deltautil
from dsr.errors import DsrError, StepError, scrub

__all__ = ["Batch", "safe_error", "table_failures"]

log = logging.getLogger("dsr.steps")


@dataclass
class _Memo:
    """What the previous step of this process read: one run's requests (by control-table version) and their
    audit events (up to a seq). One entry each: a process serves one run at a time."""

    requests: tuple[tuple[str, str, int], list[control.Request]] | None = None
    events: _Events | None = None


@dataclass(frozen=True)
class _Events:
    """The audit events of one set of requests as the log held them at ``version``: ``last`` is the newest
    seq among them (a later read asks only for events after it)."""

    key: tuple[str, tuple[str, ...]]
    version: int
    last: int
    by_request: dict[str, list[dict[str, Any]]]

    def appended(self, rows: Sequence[dict[str, Any]], version: int) -> _Events | None:
        """These events with ``rows`` (as written, details as text), which one commit appended at ``version``:
        None unless that commit came right after the version they were read at (else another writer's events
        may lie between: read them)."""
        if version != self.version + 1:
            return None
        merged = {rid: list(evs) for rid, evs in self.by_request.items()}
        for r in decoded_rows(r for r in rows if r["request_id"] in merged):
            merged[r["request_id"]].append(r)
        return _Events(self.key, version, max([self.last, *(r["seq"] for r in rows)]), merged)


_MEMO = _Memo()


@dataclass
class Batch:
    """The requests a run holds (status ``running`` under ``run_id``) and, on demand, their audit events."""

    policy: Policy
    run_id: str
    requests: list[control.Request]
    _events: dict[str, list[dict[str, Any]]] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, policy: Policy, run_id: str) -> Batch:
        """The run's requests at the control table's current version: read with a filter, or taken from the
        previous step of the same process when the table has not changed since (a version is immutable)."""
        table = deltautil.open_table(policy.requests_uri)
        if table is None:
            return cls(policy, run_id, [])
        key = (policy.requests_uri, run_id, table.version())
        if _MEMO.requests is None or _MEMO.requests[0] != key:
            mine = control.read_requests(table, ("run_id", [run_id]), statuses=["running"])
            _MEMO.requests = (key, sorted(mine, key=lambda r: (r.received_at, r.request_id)))
        return cls(policy, run_id, list(_MEMO.requests[1]))

    def of(self, kind: str) -> list[control.Request]:
        return [r for r in self.requests if r.kind == kind]

    @property
    def ids(self) -> list[str]:
        return [r.request_id for r in self.requests]

    @property
    def subjects(self) -> list[str]:
        """Every identifier value the run's requests hold (kept out of error texts)."""
        return [v for r in self.requests for v in r.values]

    def events(self) -> dict[str, list[dict[str, Any]]]:
        """request id -> its audit events in chain order (one filtered read, kept until the next record). An
        in-process run's later steps read only the events appended since the previous step's read (the chain's
        seq orders them; the audit log is append-only), and nothing when the log's version is the one they were
        read at, or the only commit since holds the events this batch recorded itself (:meth:`record`)."""
        if self._events is None:
            known = self._known()
            if known is None or known.version != audit.log_version(self.policy):
                fresh, version = audit.events_read(self.policy, self.ids, since=self._since(),
                                                   after_seq=None if known is None else known.last)
                merged = {rid: [*(known.by_request.get(rid, []) if known else []), *evs]
                          for rid, evs in fresh.items()}
                last = max((e["seq"] for evs in merged.values() for e in evs), default=-1)
                known = _MEMO.events = _Events(self._key(), version, last, merged)
            self._events = {rid: list(evs) for rid, evs in known.by_request.items()}
        return self._events

    def events_of(self, kinds: Sequence[str], table_name: str) -> dict[str, list[dict[str, Any]]]:
        """request id -> its events of these kinds in one table, in chain order (seq, at, event, request_id,
        run_id, table_name, details). From the events already read when this process holds them; else one read
        of only those events (a step in its own process, as an Airflow task is, reads no more than it needs)."""
        if self._events is None and self._known() is None:
            since = self._since()
            found = audit.event_columns(self.policy, kinds, request_ids=self.ids,
                                        since=None if since is None else since - audit.SKEW)
            out: dict[str, list[dict[str, Any]]] = {rid: [] for rid in self.ids}
            for e in decoded(found.sort_by([("seq", "ascending")])):
                if e["table_name"] == table_name:
                    out[e["request_id"]].append(e)
            return out
        return {rid: [e for e in evs if e["event"] in kinds and e["table_name"] == table_name]
                for rid, evs in self.events().items()}

    def _key(self) -> tuple[str, tuple[str, ...]]:
        return self.policy.audit_uri, tuple(sorted(self.ids))

    def _known(self) -> _Events | None:
        """The events this process read of these requests, if any (of another set of requests: none)."""
        known = _MEMO.events
        return known if known is not None and known.key == self._key() else None

    def _since(self) -> dt.datetime | None:
        """The oldest ``received_at`` of the requests: their events are not older (give or take the skew)."""
        return min((r.received_at for r in self.requests), default=None)

    def record(self, events: Sequence[audit.AuditEvent]) -> None:
        """Append events to the audit log. The events read so far, with these, are what a read would now give
        when no other commit came between: the next :meth:`events` reads nothing; else it reads what is new."""
        if events:
            rows, version = audit.append_rows(self.policy, events)
            known = self._known()
            if known is not None:
                # else still right up to its version: the next read asks only for what is newer
                _MEMO.events = known.appended(rows, version) or known
            self._events = None

    def keep_lease(self, now: dt.datetime | None = None) -> int:
        """Renew the lease of the held requests when less than half of ``claim_ttl_minutes`` is left."""
        at = now or dt.datetime.now(dt.UTC)
        half = dt.timedelta(minutes=self.policy.claim_ttl_minutes) / 2
        due = [r.request_id for r in self.requests if r.lease_until is None or r.lease_until - at < half]
        lease.renew(self.policy, self.run_id, "run")
        return control.renew_lease(self.policy, self.run_id, due) if due else 0

    def refuse(self, table: TableSpec, request_ids: Sequence[str], step: str, reason: str, *, final: bool) -> None:
        """Record that a step could not process a table for these requests (the reason names no subject)."""
        log.error("run %s: %s of table %s: %s", self.run_id, step, table.name, reason)
        self.record([
            audit.AuditEvent("table_failed", request_id=rid, run_id=self.run_id, table_name=table.name,
                             details={"step": step, "reason": reason[:1000], "final": final})
            for rid in request_ids
        ])


def table_failures(events: Sequence[dict[str, Any]], run_id: str | None = None) -> dict[str, dict[str, Any]]:
    """table -> details of its latest ``table_failed`` event (of this run when given) not followed by success."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        if run_id is not None and e["run_id"] != run_id:
            continue
        if e["event"] == "table_failed":
            out[e["table_name"]] = e["details"]
        elif e["event"] in ("table_exported", "table_erased", "table_retained"):
            out.pop(e["table_name"], None)
    return out


def safe_error(exc: BaseException, policy: Policy | None, run_id: str) -> Exception:
    """An exception fit for logs: dsr's own errors as they are (they never hold subject ids); any other
    error re-worded as a ``StepError`` with the run's subject ids scrubbed from its text.

    Raise the result ``from None`` so the original message does not reach a traceback.
    """
    if isinstance(exc, DsrError):
        return exc
    subjects: list[str] = []
    if policy is not None:
        try:
            subjects = [v for r in control.list_requests(policy, run_id=run_id) for v in r.values]
        except Exception:
            subjects = []
    text = scrub(access.error_line(exc), subjects)
    if policy is None or not subjects:
        text = f"{type(exc).__name__} (message withheld: it could not be checked for subject ids)"
    return StepError(text)
