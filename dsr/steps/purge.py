"""Purge: physically remove what completed erasures left in their tables, once each table's window has passed.

An erase commit at version V leaves the person's rows in the files it removed (time travel reads them), their
values in the statistics and partition values of old log entries, and, where an engine only marked rows with
deletion vectors, in live files. For every delete/anonymise table with completed erasures not yet purged whose
erase commit is ``purge_after_hours`` old (the table's, else the policy's), :func:`dsr.delta.maintenance.
purge_through` removes all of it, keeping every version from V on readable (versions before V become
unreadable: the report names them). Each purged request gets a ``table_purged`` audit event.

Once every delete/anonymise table of an erasure is purged, its subject id in the control table is replaced by a
keyed digest (:func:`dsr.core.masks.subject_digest`) and the control table is purged the same way, so no file of
it keeps the raw id (a ``minimised`` audit event). Then the residue scan runs on the purged requests, with the
ids still in memory. Tables without due erasures are never touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core import audit, control, suppression
from dsr.core.masks import Strategy, subject_digest
from dsr.core.policy import Policy, TableSpec
from dsr.core.requests import Request
from dsr.delta import access, maintenance, physical
from dsr.engines.base import Engine
from dsr.errors import DsrError
from dsr.exports import expiry
from dsr.steps import progress
from dsr.verify import residue

__all__ = ["PurgeReport", "TablePurge", "due_purges", "purge", "purge_states", "purge_states_of"]


@dataclass
class TablePurge:
    """One table's purge: through which version, for which requests, what was (or would be) removed."""

    table: str
    version: int | None  # the oldest version readable afterwards; None: the erasures committed nothing here
    request_ids: list[str]
    removed: dict[str, Any] = field(default_factory=dict)
    residue: int | None = None  # the purged requests' findings left in this table's files (None: not scanned)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "version": self.version, "requests": self.request_ids, **self.removed,
                "residue": self.residue, "error": self.error}


@dataclass
class PurgeReport:
    dry_run: bool
    tables: list[TablePurge] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # table -> when its next erasure is due for purge
    own_residue: dict[str, int] = field(default_factory=dict)  # control table, audit table, exports
    minimised: dict[str, Any] = field(default_factory=dict)  # the control table's purge, when ids were digested
    exports: dict[str, int] = field(default_factory=dict)  # documents deleted (would be, dry run): erased, expired

    @property
    def exit_code(self) -> int:
        return 1 if any(t.error or t.residue for t in self.tables) or self.minimised.get("control_residue") else 0

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "tables": [t.as_dict() for t in self.tables], "waiting": self.waiting,
                "own_residue": self.own_residue, "minimised": self.minimised, "exports": self.exports,
                "exit_code": self.exit_code}


@dataclass
class _Erased:
    """One request's erasure in one table, from its events: the version it left (its erase commit, or the
    version it found nothing to change in), when, whether it committed, whether it was purged already."""

    version: int | None = None
    at: dt.datetime | None = None
    committed: bool = False
    purged: bool = False


def _erase_versions(events: Sequence[Mapping[str, Any]], table: str) -> _Erased:
    out = _Erased()
    for e in events:
        if e["table_name"] != table:
            continue
        if e["event"] == "table_purged":
            out.purged = True
        elif e["event"] in ("table_erased", "table_swept"):
            d = e["details"]
            if d.get("version_after") is not None:
                out.version = max(out.version if out.version is not None else -1, int(d["version_after"]))
                out.committed |= int(d["version_after"]) > int(d.get("version_before", -1))
            out.at = e["at"] if out.at is None or e["at"] > out.at else out.at
    return out


@dataclass
class _Due:
    """A table's due erasures: the version to purge through, the requests, whether any of them committed."""

    version: int | None
    request_ids: list[str]
    committed: bool


def _sweeps(events: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Sweep id -> its events, for the sweeps that committed (their removed files hold the swept rows)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        out.setdefault(e["request_id"], []).append(e)
    return {sid: evs for sid, evs in out.items() if any(
        e["event"] == "table_swept" and e["details"].get("version_after", -1) != e["details"].get("version_before")
        for e in evs)}


def due_purges(policy: Policy, now: dt.datetime) -> tuple[dict[str, _Due], dict[str, str]]:
    """table -> its due erasures (and sweeps that committed: they are purged the same way, under their sweep
    id); table -> when the next one is due."""
    completed: list[Request] = [r for r in control.list_requests(policy, status="completed") if r.kind == "erase"]
    everything = audit.events(policy)
    events: dict[str, list[Mapping[str, Any]]] = {r.request_id: [] for r in completed}
    for ev in everything:
        if ev["request_id"] in events:
            events[ev["request_id"]].append(ev)
    sweeps = _sweeps(everything)
    events.update(sweeps)
    ids = [r.request_id for r in completed] + sorted(sweeps)
    due: dict[str, _Due] = {}
    waiting: dict[str, str] = {}
    for table in policy.tables:
        if table.erase is Strategy.RETAIN:
            continue
        window = dt.timedelta(hours=policy.purge_window_hours(table))
        todo = _Due(None, [], False)
        for rid in ids:
            e = _erase_versions(events[rid], table.name)
            if e.purged or e.at is None or (rid in sweeps and not e.committed):
                continue
            if e.at + window > now:
                waiting[table.name] = min(waiting.get(table.name, "~"), (e.at + window).strftime("%Y-%m-%d %H:%M"))
                continue
            todo.request_ids.append(rid)
            todo.committed |= e.committed
            if e.version is not None:
                todo.version = max(todo.version if todo.version is not None else -1, e.version)
        if todo.request_ids:
            due[table.name] = todo
    return due, waiting


def _purge_table(policy: Policy, table: TableSpec, due: _Due, dry_run: bool,
                 rewrite: tuple[str, Callable[[str], int]] | None) -> TablePurge:
    """Purge one table through the due version. When none of the erasures committed here (their people had no
    live row), their rows may still be in old versions or behind deletion vectors someone else wrote: the
    table's files are searched first, and its history is cut only if one of them is found."""
    out = TablePurge(table.name, due.version, due.request_ids)
    if due.version is not None and not due.committed:
        found = residue.table_counts(table, control.list_requests(policy, ids=due.request_ids))
        if not any(sum(c.values()) for c in found.values()):
            out.version = None
    if out.version is None:  # nothing of these people is on disk here: nothing to remove
        out.removed = {"unreadable_versions": "none"}
    elif dry_run:
        out.removed = maintenance.plan(table.uri, out.version).as_dict()
    else:
        private = {table.subject, *table.mask_map}
        done = maintenance.purge_through(table.uri, out.version, private=private, rewrite=rewrite)
        out.version = done.version
        out.removed = done.as_dict()
    if not dry_run:
        audit.append(policy, [audit.AuditEvent("table_purged", request_id=rid, table_name=table.name,
                                               details={**out.removed, "version": out.version})
                              for rid in due.request_ids])
    return out


def _rewriter(engine: Engine | None) -> tuple[str, Callable[[str], int]] | None:
    """The engine's own rewrite of deletion-vector files, when it has one (Spark's REORG ... APPLY (PURGE) on
    delta-spark and Databricks); None: delta-rs rewrites them."""
    if engine is not None and getattr(engine, "rewrites_deletion_vectors", False):
        return "REORG TABLE ... APPLY (PURGE)", engine.rewrite_deletion_vectors  # type: ignore[attr-defined]
    return None


def purge(policy: Policy, *, dry_run: bool = False, now: dt.datetime | None = None,
          engine: Engine | None = None) -> PurgeReport:
    """Purge every table with due erasures (or, ``dry_run``, say what that would remove, writing nothing).
    Writing needs the pseudonym key (for the digests): PolicyError before anything is written when unset.
    ``engine``: a Spark engine whose server rewrites deletion-vector files itself (REORG); the rest of the
    maintenance is delta-rs on every engine (VACUUM, checkpoints and log cleanup are not Spark SQL on all)."""
    key = None if dry_run else policy.pseudonym_key()
    now = now or dt.datetime.now(dt.UTC)
    due, waiting = due_purges(policy, now)
    report = PurgeReport(dry_run=dry_run, waiting={t: w for t, w in waiting.items() if t not in due})
    for table in policy.tables:
        if table.name not in due:
            continue
        todo = due[table.name]
        progress.started("purge", table.name)
        try:
            report.tables.append(_purge_table(policy, table, todo, dry_run, _rewriter(engine)))
        except Exception as exc:  # a foreign failure mid-purge: reported in one line, never an id
            error = str(exc) if isinstance(exc, DsrError) else access.error_line(exc)
            report.tables.append(TablePurge(table.name, todo.version, todo.request_ids, error=error))
        progress.finished("purge", table.name, report.tables[-1].removed, report.tables[-1].error)
    erased_docs: dict[str, str] = {}
    purged: list[Request] = []
    if not dry_run and report.tables and key is not None:
        purged = control.list_requests(policy, ids=sorted({rid for t in report.tables for rid in t.request_ids}))
        report.minimised, erased_docs = _minimise(policy, purged, key)
    report.exports = _expire_exports(policy, now, erased_docs, dry_run=dry_run)
    if purged:
        _scan(policy, report, purged)
    return report


def _expire_exports(policy: Policy, now: dt.datetime, erased: dict[str, str], *, dry_run: bool) -> dict[str, int]:
    """Delete the export documents of people whose erasure was purged, and every document older than
    ``export_ttl_days``; an ``export_deleted`` audit event for each (dry run: count them only)."""
    expired = {rid: path for rid, path in expiry.expired_documents(policy.exports, now, policy.export_ttl_days).items()
               if rid not in erased}
    if not dry_run:
        gone = expiry.delete_documents(policy.exports, {**erased, **expired})
        ttl = f"older than {policy.export_ttl_days} day(s)"
        audit.append(policy, [audit.AuditEvent("export_deleted", request_id=rid, details={
            "why": "erased" if rid in erased else ttl}) for rid in sorted(gone)])
        return {"erased": len(gone & set(erased)), "expired": len(gone & set(expired))}
    return {"erased": len(erased), "expired": len(expired)}


def _fully_purged(policy: Policy, requests: Sequence[Request]) -> list[Request]:
    """The erasures whose every delete/anonymise table has a ``table_purged`` event, id not yet digested."""
    tables = {t.name for t in policy.tables if t.erase is not Strategy.RETAIN}
    events = audit.events_by_request(policy, [r.request_id for r in requests])
    return [r for r in requests if not r.minimised and tables <= {
        e["table_name"] for e in events[r.request_id] if e["event"] == "table_purged"}]


def _minimise(policy: Policy, requests: Sequence[Request], key: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """Digest the subject ids of the fully purged erasures, purge the control table's older versions, and check
    that no file of it still holds one of those ids. Also returns those people's export documents (request id
    -> document), which go with the erasure."""
    done = _fully_purged(policy, requests)
    if not done:
        return {}, {}
    suppression.ensure(policy, key, done)  # re-applying the erasure later needs its entry: before the id goes
    people = {r.subject_id for r in done}  # their completed exports name them too
    rows = [r for r in control.list_requests(policy, status="completed") if r.subject_id in people]
    version = control.minimise(policy, {r.request_id: subject_digest(key, r.subject_id) for r in rows})
    removed = maintenance.purge_through(policy.requests_uri, version)
    left = physical.find_keys(policy.requests_uri, {"subject_id"}, sorted({r.subject_id for r in done}))
    found = {r.request_id: int(sum(left.get(r.subject_id, {}).values())) for r in done}
    audit.append(policy, [audit.AuditEvent("minimised", request_id=r.request_id, details={
        "control_version": removed.version, "control_residue": found[r.request_id]}) for r in done])
    docs = {r.request_id: r.export_uri for r in rows if r.kind == "export" and r.export_uri}
    return {"requests": len(done), **removed.as_dict(), "control_residue": sum(found.values())}, docs


def _scan(policy: Policy, report: PurgeReport, purged: Sequence[Request]) -> None:
    """The residue scan on the purged requests (their raw ids read before the digest): per purged table, and
    dsr's own places; a ``residue_scanned`` audit event per request keeps its counts (per table and place)."""
    found = residue.scan(policy, purged)
    audit.append(policy, [audit.AuditEvent("residue_scanned", request_id=r.request_id, details={
        "tables": r.tables, "own": r.own, "total": r.total()}) for r in found])
    for t in report.tables:
        if t.error is None:
            counts = [r.tables.get(t.table) for r in found if r.request_id in t.request_ids]
            t.residue = sum(sum(c.values()) for c in counts if isinstance(c, dict))
    for place in residue.OWN_PLACES:
        report.own_residue[place] = sum(r.own.get(place, 0) for r in found)


def purge_states(policy: Policy, requests: Sequence[Request], now: dt.datetime) -> dict[str, dict[str, Any]]:
    """Each completed erasure: ``{"state": "purged", "at", "residue": the last scan's total}`` or ``{"state": "due",
    "at", "overdue"}`` (a purge not done by the request's own due date is overdue like the request)."""
    todo = [r for r in requests if r.kind == "erase" and r.status == "completed"]
    return purge_states_of(policy, todo, audit.events_by_request(policy, [r.request_id for r in todo]), now)


def purge_states_of(policy: Policy, requests: Sequence[Request], events: Mapping[str, Sequence[Mapping[str, Any]]],
                    now: dt.datetime) -> dict[str, dict[str, Any]]:
    """:func:`purge_states` from audit rows already read (request id -> its rows in chain order): pure."""
    tables = [t for t in policy.tables if t.erase is not Strategy.RETAIN]
    out: dict[str, dict[str, Any]] = {}
    for r in (r for r in requests if r.kind == "erase" and r.status == "completed"):
        mine = events.get(r.request_id, ())
        purged = {e["table_name"]: e["at"] for e in mine if e["event"] == "table_purged"}
        scans = [e["details"] for e in mine if e["event"] == "residue_scanned"]
        if all(t.name in purged for t in tables):
            out[r.request_id] = {"state": "purged", "at": max(purged.values(), default=r.updated_at).isoformat(),
                                 "residue": scans[-1].get("total") if scans else None}
            continue
        due = max((e["at"] + dt.timedelta(hours=policy.purge_window_hours(t))
                   for t in tables if t.name not in purged
                   for e in mine if e["event"] == "table_erased" and e["table_name"] == t.name),
                  default=r.updated_at)
        out[r.request_id] = {"state": "due", "at": due.isoformat(), "overdue": now > r.due_at}
    return out
