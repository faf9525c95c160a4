"""Purge: physically remove what completed erasures left behind, once each table's window has passed.

An erase commit at version V leaves the person's rows in the files it removed (time travel reads them), their
values in the statistics and partition values of old log entries, and, where an engine only marked rows with
deletion vectors, in live files. The purge has two stages, each safe to be killed at any point and finished by
the next ``dsr purge`` (README: "Crash safety"); it holds the exclusive lease (:mod:`dsr.core.lease`), so no run
or sweep reads or writes beside it.

1. **Tables.** For every delete/anonymise table with completed erasures (and committed sweeps) not yet purged
   whose erase commit is ``purge_after_hours`` old, :func:`dsr.delta.maintenance.purge_through` removes all of
   it, keeping every version from V on readable. The table's files are then searched for the purged people
   (their ids are still in the control table); only when none is found do its requests get a ``table_purged``
   audit event. A table that keeps residue is reported (exit 1) and purged again next time. Every subject
   column of a table is searched with its kind's keys (a kind that normalises: in canonical form).
2. **Settling.** An erasure purged in every delete/anonymise table, without a ``minimised`` event yet, is
   settled whatever the first stage did this time (a purge killed after stage 1 is finished here): its
   suppression entries are made (one per identifier); its person's export packages are deleted, found by
   request id under the policy's ``exports`` (never by a stored path); the residue scan runs with the raw
   identifiers (a ``residue_scanned`` event); then every identifier of the person's requests is replaced by a
   keyed digest in the control table (``subject_id``, and each value of ``identities``:
   :mod:`dsr.steps.purge_people`), whose older versions are purged the same way, the control table is checked
   pair by pair (:mod:`dsr.verify.control_scan`), and a ``minimised`` event marks the erasure purged. Until that
   event, ``dsr requests`` shows the purge as due.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core import audit, audit_guard, control, lease, suppression
from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec
from dsr.core.requests import Request
from dsr.delta import access, crashpoints, maintenance, storage
from dsr.engines.base import Engine
from dsr.engines.reading import LOCAL, Reader
from dsr.errors import DsrError
from dsr.exports import expiry
from dsr.steps import progress, purge_people
from dsr.verify import control_scan, residue

__all__ = ["PurgeReport", "TablePurge", "due_purges", "new_purge_id", "purge", "purge_states", "purge_states_of"]


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
    purge_id: str = ""
    tables: list[TablePurge] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # table -> when its next erasure is due for purge
    own_residue: dict[str, int] = field(default_factory=dict)  # control table, audit table, exports
    minimised: dict[str, Any] = field(default_factory=dict)  # the control table's purge, when ids were digested
    exports: dict[str, int] = field(default_factory=dict)  # documents deleted (would be, dry run): erased, expired

    @property
    def exit_code(self) -> int:
        return 1 if any(t.error or t.residue for t in self.tables) or self.minimised.get("control_residue") \
            or self.minimised.get("error") or any(self.own_residue.values()) else 0

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "purge_id": self.purge_id, "tables": [t.as_dict() for t in self.tables],
                "waiting": self.waiting, "own_residue": self.own_residue, "minimised": self.minimised,
                "exports": self.exports, "exit_code": self.exit_code}


def new_purge_id() -> str:
    return "purge_" + control.new_run_id().removeprefix("run_")


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


@dataclass
class _Ledger:
    """What the control table and the audit log say of the erasures a purge may act on (read once)."""

    completed: list[Request]  # completed erasures
    events: dict[str, list[Mapping[str, Any]]]  # request or sweep id -> its events, chain order
    sweeps: set[str]  # sweep ids that committed somewhere

    @classmethod
    def read(cls, policy: Policy) -> _Ledger:
        completed = [r for r in control.list_requests(policy, status="completed") if r.kind == "erase"]
        everything = audit.events(policy)
        events: dict[str, list[Mapping[str, Any]]] = {r.request_id: [] for r in completed}
        for ev in everything:
            if ev["request_id"] in events:
                events[ev["request_id"]].append(ev)
        sweeps = _sweeps(everything)
        events.update(sweeps)
        return cls(completed, events, set(sweeps))

    def unsettled(self, policy: Policy) -> list[Request]:
        """The erasures purged in every delete/anonymise table that no ``minimised`` event marks settled."""
        tables = {t.name for t in policy.tables if t.erase is not Strategy.RETAIN}
        out = []
        for r in self.completed:
            evs = self.events.get(r.request_id, [])
            purged = {e["table_name"] for e in evs if e["event"] == "table_purged"}
            if tables <= purged and not any(e["event"] == "minimised" for e in evs):
                out.append(r)
        return out


def _sweeps(events: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Sweep id -> its events, for the sweeps that committed (their removed files hold the swept rows)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        out.setdefault(e["request_id"], []).append(e)
    return {sid: evs for sid, evs in out.items() if any(
        e["event"] == "table_swept" and e["details"].get("version_after", -1) != e["details"].get("version_before")
        for e in evs)}


def due_purges(policy: Policy, now: dt.datetime, ledger: _Ledger | None = None
               ) -> tuple[dict[str, _Due], dict[str, str]]:
    """table -> its due erasures (and sweeps that committed: they are purged the same way, under their sweep
    id); table -> when the next one is due."""
    led = ledger or _Ledger.read(policy)
    ids = [r.request_id for r in led.completed] + sorted(led.sweeps)
    due: dict[str, _Due] = {}
    waiting: dict[str, str] = {}
    for table in policy.tables:
        if table.erase is Strategy.RETAIN:
            continue
        window = dt.timedelta(hours=policy.purge_window_hours(table))
        todo = _Due(None, [], False)
        for rid in ids:
            e = _erase_versions(led.events[rid], table.name)
            if e.purged or e.at is None or (rid in led.sweeps and not e.committed):
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


def _holds(reader: Reader, uri: str, terms: Sequence[residue.Terms]) -> maintenance.Holds | None:
    """The purge's search of files no version references, by the engine's reader (each file its own group; each
    subject column with its kind's keys); the in-process reader leaves it to the purge's own row-by-row search."""
    if not terms or reader.where == LOCAL.where:
        return None

    def holds(rels: list[str]) -> set[str]:
        out: set[str] = set()
        for t in terms:
            if t.wanted:
                found = reader.key_rows(uri, {rel: [rel] for rel in rels}, t.names, t.keys.keys, steps=t.steps)
                out |= {rel for counts in found.values() for rel, n in counts.items() if n}
        return out

    return holds


def _purge_table(policy: Policy, table: TableSpec, due: _Due, people: Sequence[Request], dry_run: bool,
                 rewrite: tuple[str, Callable[[str], int]] | None, reader: Reader) -> TablePurge:
    """Purge one table through the due version, then search its files for ``people`` (the due erasures whose
    identifiers are known; sweeps have none; every subject column with its kind's keys; the rows of the files
    read by ``reader``): ``table_purged`` events only when none is left. When none of the erasures committed here
    (their people had no live row), their rows may still be in old versions or behind deletion vectors someone
    else wrote: the files are searched first, and the history is cut only if one is found."""
    out = TablePurge(table.name, due.version, due.request_ids)
    terms = residue.every_term(policy, table, people) if people else []
    sought = [t.sought for t in terms]
    if due.version is not None and not due.committed:
        found = residue.table_counts(policy, table, people, reader) if people else {}
        if not any(sum(c.values()) for c in found.values()):
            out.version = None
    if out.version is None:  # nothing of these people is on disk here: nothing to remove
        out.removed = {"unreadable_versions": "none"}
    elif dry_run:
        out.removed = maintenance.plan(table.uri, out.version, sought=sought,
                                       holds=_holds(reader, table.uri, terms)).as_dict()
    else:
        private = {*table.subject_names, *(c for c, _ in table.every_mask)}
        done = maintenance.purge_through(table.uri, out.version, private=private, sought=sought,
                                         rewrite=rewrite, scratch=_scratch(policy),
                                         holds=_holds(reader, table.uri, terms))
        out.version = done.version
        out.removed = done.as_dict()
    if dry_run:
        return out
    left = residue.table_counts(policy, table, people, reader) if people else {}
    out.residue = sum(sum(c.values()) for c in left.values())
    if out.residue:
        out.error = (f"{out.residue} finding(s) of the purged erasures are still in the table's files (dsr "
                     "residue names the places); not marked purged: the next purge tries again")
        return out
    crashpoints.reached("purge.table_checked")
    audit.append(policy, [audit.AuditEvent("table_purged", request_id=rid, table_name=table.name, details={
        **out.removed, "version": out.version, "residue": left.get(rid)}) for rid in due.request_ids])
    crashpoints.reached("purge.table_recorded")
    return out


def _rewriter(engine: Engine | None) -> tuple[str, Callable[[str], int]] | None:
    """The engine's own rewrite of deletion-vector files, when it has one (Spark's REORG ... APPLY (PURGE) on
    delta-spark and Databricks); None: delta-rs rewrites them."""
    if engine is not None and getattr(engine, "rewrites_deletion_vectors", False):
        return "REORG TABLE ... APPLY (PURGE)", engine.rewrite_deletion_vectors  # type: ignore[attr-defined]
    return None


def purge(policy: Policy, *, dry_run: bool = False, now: dt.datetime | None = None,
          engine: Engine | None = None, purge_id: str | None = None) -> PurgeReport:
    """Purge every table with due erasures and settle every erasure purged everywhere (or, ``dry_run``, say
    what that would remove, writing nothing). Writing needs the pseudonym key (for the digests; checked against
    the suppression list's), an intact audit chain and the exclusive lease: refused before anything is written
    otherwise. ``engine``: a Spark engine whose server rewrites deletion-vector files itself (REORG); the rest of
    the maintenance is delta-rs on every engine (VACUUM, checkpoints and log cleanup are not Spark SQL on all).
    The residue scans read the tables' data files with the engine's reader (on Spark, the cluster); without an
    engine, in this process."""
    pid = purge_id or new_purge_id()
    if dry_run:
        return _purge(policy, pid, None, dry_run=True, now=now, engine=engine, keep=lambda: None)
    key = policy.pseudonym_key()
    suppression.check_key(policy, key)
    intact = audit_guard.require_intact_chain(policy)
    if not _anything_to_do(policy, now or dt.datetime.now(dt.UTC)):  # then nothing is written, not even a lease
        return _purge(policy, pid, key, dry_run=False, now=now, engine=engine, keep=lambda: None)
    with lease.exclusive(policy, pid) as keep:
        report = _purge(policy, pid, key, dry_run=False, now=now, engine=engine, keep=keep)
    audit_guard.remember(policy, intact)
    return report


def _anything_to_do(policy: Policy, now: dt.datetime) -> bool:
    """Whether a purge would write: a table due, an erasure to settle, or a package past its time."""
    ledger = _Ledger.read(policy)
    return bool(due_purges(policy, now, ledger)[0] or ledger.unsettled(policy)
                or expiry.expired_documents(policy.exports, now, policy.export_ttl_days))


def _purge(policy: Policy, pid: str, key: bytes | None, *, dry_run: bool, now: dt.datetime | None,
           engine: Engine | None, keep: Callable[[], None]) -> PurgeReport:
    now = now or dt.datetime.now(dt.UTC)
    reader = engine.reader if engine is not None else LOCAL
    ledger = _Ledger.read(policy)
    due, waiting = due_purges(policy, now, ledger)
    report = PurgeReport(dry_run=dry_run, purge_id=pid, waiting={t: w for t, w in waiting.items() if t not in due})
    known = {r.request_id: r for r in ledger.completed if not r.minimised}
    for table in policy.tables:
        if table.name not in due:
            continue
        todo = due[table.name]
        keep()
        progress.started("purge", table.name)
        people = [known[rid] for rid in todo.request_ids if rid in known]
        try:
            report.tables.append(_purge_table(policy, table, todo, people, dry_run, _rewriter(engine), reader))
        except Exception as exc:  # a foreign failure mid-purge: reported in one line, never an id
            error = str(exc) if isinstance(exc, DsrError) else access.error_line(exc)
            report.tables.append(TablePurge(table.name, todo.version, todo.request_ids, error=error))
        with progress.dry_run(dry_run):
            progress.finished("purge", table.name, report.tables[-1].removed, report.tables[-1].error)
    erased: set[str] = set()
    if not dry_run and key is not None:
        keep()
        try:
            # with the table_purged events just written
            erased = _settle(policy, _Ledger.read(policy), key, report, reader)
        except Exception as exc:  # reported in one line, never an id; the next purge settles them
            report.minimised = {"error": str(exc) if isinstance(exc, DsrError) else access.error_line(exc)}
    report.exports = _expire_exports(policy, now, erased, dry_run=dry_run)
    return report


def _expire_exports(policy: Policy, now: dt.datetime, erased: set[str], *, dry_run: bool) -> dict[str, int]:
    """Delete every document older than ``export_ttl_days`` (an ``export_deleted`` audit event each; dry run:
    count them only). ``erased``: the documents the settling deleted, counted."""
    expired = set(expiry.expired_documents(policy.exports, now, policy.export_ttl_days)) - erased
    if dry_run:
        return {"erased": 0, "expired": len(expired)}
    gone = expiry.delete_documents(policy.exports, sorted(expired))
    ttl = f"older than {policy.export_ttl_days} day(s)"
    audit.append(policy, [audit.AuditEvent("export_deleted", request_id=rid, details={"why": ttl})
                          for rid in sorted(gone)])
    return {"erased": len(erased), "expired": len(gone)}


def _settle(policy: Policy, ledger: _Ledger, key: bytes, report: PurgeReport, reader: Reader) -> set[str]:
    """Stage 2 for the erasures purged everywhere and not yet settled; returns the export requests whose
    packages were deleted. Each step is idempotent, in an order a crash cannot skip: what needs the raw
    identifiers (the suppression entries, the residue scan) comes before they are digested."""
    todo = ledger.unsettled(policy)
    if not todo:
        return set()
    raw = [r for r in todo if not r.minimised]
    suppression.ensure(policy, key, raw)  # re-applying the erasure later needs its entries: before the ids go
    rows, owner = purge_people.people_rows(policy, todo, key)  # their exports name them too
    exports = [r for r in rows if r.kind == "export"]
    deleted = _delete_packages(policy, exports)
    crashpoints.reached("purge.packages_deleted")
    scanned = _scan(policy, raw, ledger, reader)
    crashpoints.reached("purge.scanned")
    version = control.minimise(policy, *purge_people.minimised(key, rows))
    crashpoints.reached("purge.minimised")
    removed = maintenance.purge_through(policy.requests_uri, max(version, _current(policy.requests_uri)),
                                        scratch=_scratch(policy))
    left = control_scan.findings(policy.requests_uri, control_scan.raw_pairs(raw), owner)
    crashpoints.reached("purge.control_checked")
    found = {r.request_id: int(left[r.request_id]) for r in todo}
    final = {r.request_id: _full_scan(scanned.get(r.request_id) or _last_scan(policy, r.request_id),
                                      found[r.request_id]) for r in todo}
    audit.append(policy, [audit.AuditEvent("residue_scanned", request_id=rid, details=d) for rid, d in final.items()])
    audit.append(policy, [audit.AuditEvent("minimised", request_id=r.request_id, details={
        "control_version": removed.version, "control_residue": found[r.request_id]}) for r in todo])
    report.minimised = {"requests": len(todo), **removed.as_dict(), "control_residue": sum(found.values())}
    report.own_residue = {place: sum(int(d["own"].get(place, 0)) for d in final.values())
                          for place in residue.OWN_PLACES}
    return deleted


def _scratch(policy: Policy) -> str:
    """Where a purge builds a table's new checkpoint before it goes into the table's log (emptied after)."""
    return storage.join(policy.control_uri, "scratch")


def _current(uri: str) -> int:
    return int(access.open_table(uri).version())


def _delete_packages(policy: Policy, exports: Sequence[Request]) -> set[str]:
    """Delete the packages of these export requests (found by request id under the policy's ``exports``); an
    ``export_deleted`` audit event for each that had none yet (a purge killed between the deletion and its
    event records it on the next run)."""
    ids = [r.request_id for r in exports]
    if not ids:
        return set()
    gone = expiry.delete_documents(policy.exports, ids)
    recorded = {rid for rid, evs in audit.events_by_request(policy, ids).items()
                if any(e["event"] == "export_deleted" for e in evs)}
    audit.append(policy, [audit.AuditEvent("export_deleted", request_id=rid, details={"why": "erased"})
                          for rid in ids if rid not in recorded])
    return gone | (set(ids) - recorded)


def _scan(policy: Policy, raw: Sequence[Request], ledger: _Ledger, reader: Reader) -> dict[str, residue.Residue]:
    """The residue of the settling erasures whose raw id is known: per table, what the purge's own check of
    the table found (its ``table_purged`` event; a table purged before those kept it is scanned now), and the
    audit table and the exports, searched now (the control table is checked after the digest). A
    ``residue_scanned`` event for each keeps it, so a purge killed after the digest still has it."""
    found = {r.request_id: r for r in residue.scan(policy, raw, tables=False, control_table=False)}
    for r in raw:
        for table in policy.tables:
            if table.erase is Strategy.RETAIN:
                found[r.request_id].tables[table.name] = residue.RETAINED
                continue
            recorded = [e["details"].get("residue") for e in ledger.events.get(r.request_id, [])
                        if e["event"] == "table_purged" and e["table_name"] == table.name]
            counts = recorded[-1] if recorded and isinstance(recorded[-1], dict) else \
                residue.table_counts(policy, table, [r], reader)[r.request_id]
            found[r.request_id].tables[table.name] = {k: int(v) for k, v in counts.items()}
    audit.append(policy, [audit.AuditEvent("residue_scanned", request_id=rid, details={**r.as_dict(), "partial": True})
                          for rid, r in found.items()])
    return found


def _last_scan(policy: Policy, request_id: str) -> residue.Residue:
    """The residue recorded by the last scan of a request (a purge killed after the digest)."""
    scans = [e["details"] for e in audit.events(policy, request_id=request_id) if e["event"] == "residue_scanned"]
    last = scans[-1] if scans else {}
    return residue.Residue(request_id, dict(last.get("tables") or {}), dict(last.get("own") or {}))


def _full_scan(scan: residue.Residue, control_residue: int) -> dict[str, Any]:
    own = {**scan.own, "control table": control_residue}
    return residue.Residue(scan.request_id, scan.tables, own).as_dict()


def purge_states(policy: Policy, requests: Sequence[Request], now: dt.datetime) -> dict[str, dict[str, Any]]:
    """Each completed erasure: ``{"state": "purged", "at", "residue": the last scan's total}`` or ``{"state": "due",
    "at", "overdue"}`` (a purge not done by the request's own due date is overdue like the request)."""
    todo = [r for r in requests if r.kind == "erase" and r.status == "completed"]
    return purge_states_of(policy, todo, audit.events_by_request(policy, [r.request_id for r in todo]), now)


def purge_states_of(policy: Policy, requests: Sequence[Request], events: Mapping[str, Sequence[Mapping[str, Any]]],
                    now: dt.datetime) -> dict[str, dict[str, Any]]:
    """:func:`purge_states` from audit rows already read (request id -> its rows in chain order): pure. Purged
    means settled (a ``minimised`` event): purged in every table, its packages gone, its id digested."""
    tables = [t for t in policy.tables if t.erase is not Strategy.RETAIN]
    out: dict[str, dict[str, Any]] = {}
    for r in (r for r in requests if r.kind == "erase" and r.status == "completed"):
        mine = events.get(r.request_id, ())
        purged = {e["table_name"]: e["at"] for e in mine if e["event"] == "table_purged"}
        settled = [e["at"] for e in mine if e["event"] == "minimised"]
        scans = [e["details"] for e in mine if e["event"] == "residue_scanned"]
        if all(t.name in purged for t in tables) and settled:
            out[r.request_id] = {"state": "purged", "at": max([*purged.values(), *settled]).isoformat(),
                                 "residue": scans[-1].get("total") if scans else None}
            continue
        due = max((e["at"] + dt.timedelta(hours=policy.purge_window_hours(t))
                   for t in tables if t.name not in purged
                   for e in mine if e["event"] == "table_erased" and e["table_name"] == t.name),
                  default=r.updated_at)
        out[r.request_id] = {"state": "due", "at": due.isoformat(), "overdue": now > r.due_at}
    return out
