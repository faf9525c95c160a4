"""Sweep: apply every past erasure again, so erased people stay erased when their rows come back.

Rows come back when an ingestion job appends late or replayed data, a table is restored (Delta RESTORE, files
copied back), or a table joins the policy after erasures ran. A sweep finds them without the people's
identifiers: the engine hashes each subject column's values (normalised first for a kind that normalises) with
the secret of the column's identifier kind and joins the digests of that kind's entries
(:mod:`dsr.steps.sweep_search`, :mod:`dsr.engines.matching`); the values that match are erased like a run erases,
with the same masks and pseudonyms, in one commit per subject column holding matched rows (owners first, then
mentions), verified by the GE suites on an independent read-back over every subject column, and recorded as a
``table_swept`` audit event under the sweep's id (``dsr receipt SWEEP_ID``).

Incremental by default (:mod:`dsr.steps.sweep_state`): only the files live now that were not live at the
version the table's last sweep checked; in full for a table pending its first sweep, or never swept.
``--since-version``/``--since`` choose the baseline; ``dry_run`` counts what would change and writes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core import audit, audit_guard, control, gate, lease, suppression
from dsr.core.digests import suppression_secret
from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec
from dsr.delta import access, newfiles
from dsr.engines.base import Engine
from dsr.engines.reading import Reader
from dsr.errors import DsrError, InputError
from dsr.plan import keys as keys_
from dsr.steps import progress, sweep_search
from dsr.steps.erase import plan_commit
from dsr.steps.sweep_pending import table_states
from dsr.steps.sweep_state import TableState, spec_of
from dsr.steps.verify import failed_suites
from dsr.verify.checks import check_table

__all__ = ["SweepReport", "TableSweep", "Window", "sweep", "sweep_table", "sweepable"]

log = logging.getLogger("dsr.steps")


@dataclass(frozen=True)
class Window:
    """Which files a sweep reads: ``full``; or new since ``since_version``, or since the version current at
    ``since`` (a time); or, with none of them, since the table's last sweep."""

    full: bool = False
    since_version: int | None = None
    since: dt.datetime | None = None


@dataclass
class TableSweep:
    """One table's sweep: what was read, what matched, what changed (counts only)."""

    table: str
    mode: str = "incremental"  # incremental | full | since
    since_version: int | None = None
    version_before: int | None = None
    version_after: int | None = None
    files_live: int = 0
    files_scanned: int = 0
    files_matched: int | None = 0
    rows_scanned: int | None = 0
    rows: int = 0  # rows changed (dry run: that would change)
    entries: int = 0
    entries_matched: int = 0
    strategy: str = ""
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)  # per subject column (a typed policy's)
    success: bool = True
    suites: list[str] = field(default_factory=list)  # failed GE suites
    note: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if not out["columns"]:
            del out["columns"]
        return out


@dataclass
class SweepReport:
    sweep_id: str
    dry_run: bool
    tables: list[TableSweep] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(t.error or not t.success for t in self.tables) else 0

    def as_dict(self) -> dict[str, Any]:
        return {"sweep_id": self.sweep_id, "dry_run": self.dry_run, "tables": [t.as_dict() for t in self.tables],
                "rows": sum(t.rows for t in self.tables), "exit_code": self.exit_code}


@dataclass(frozen=True)
class Context:
    """What every table of one sweep shares: the key, the list, the table states, when it started."""

    key: bytes
    entries: suppression.Entries
    states: dict[str, TableState]
    started: dt.datetime


def load_context(policy: Policy, *, dry_run: bool) -> Context:
    """Key (PolicyError before anything is written when unset), entries (added first for completed erasures
    that lack one; in memory only on a dry run), and every table's state."""
    key = policy.pseudonym_key()
    started = dt.datetime.now(dt.UTC)
    erasures = control.request_ids(policy, status="completed", kind="erase")
    entries = suppression.load(policy, key)  # one read of the list; refused with another key before any write
    intact = None if dry_run else audit_guard.require_intact_chain(policy)  # a broken audit chain: no write
    lacking = entries.missing(erasures)  # normally none: complete adds the entry when the key is set
    if lacking:
        unlisted = control.list_requests(policy, ids=lacking)
        if not dry_run:
            suppression.ensure(policy, key, unlisted)
        entries = suppression.load(policy, key, also=unlisted)
    if intact is not None:
        audit_guard.remember(policy, intact)
    return Context(key, entries, table_states(policy, erasures), started)


def _version_at(uri: str, when: dt.datetime) -> int:
    """The table's version current at ``when`` (the newest commit at or before it; -1 before the first)."""
    versions = [int(c["version"]) for c in access.open_table(uri).history()
                if dt.datetime.fromtimestamp(int(c["timestamp"]) / 1000, dt.UTC) <= when]
    return max(versions, default=-1)


def _baseline(table: TableSpec, state: TableState, window: Window) -> tuple[str, int | None]:
    if window.full or state.pending_first_sweep:
        return "full", None
    if window.since_version is not None:
        return "since", window.since_version
    if window.since is not None:
        version = _version_at(table.uri, window.since)
        return ("since", version) if version >= 0 else ("full", None)
    return ("incremental", state.since) if state.since is not None else ("full", None)


def sweep_table(policy: Policy, engine: Engine, sweep_id: str, table_name: str, ctx: Context, *,
                window: Window = Window(), dry_run: bool = False) -> TableSweep:
    """Sweep one table: search every subject column with its kind's entries (engine), count, and unless
    ``dry_run`` erase (one commit per column holding matched rows, owners first), verify and record. A failed
    verification is recorded and returned (``success`` False), not raised.

    The stages run in order on one table and share their counts; split, they would pass a dozen values.
    """
    table = policy.table(table_name)
    out = TableSweep(table.name, strategy=str(table.erase), entries=len(ctx.entries))
    if table.erase is Strategy.RETAIN:
        out.note = "retained by policy: not swept"
        return out
    verdict = gate.check_table(table, engine.support)
    if not verdict.ok or verdict.info is None:
        raise InputError(f"table '{table.name}': cannot be swept on engine {engine.name}: {verdict.reason}")
    info = verdict.info
    secret = suppression_secret(ctx.key)
    sweep_search.searches(policy, table, info, ctx.entries, secret)  # a column it cannot match: refused first
    out.mode, since = _baseline(table, ctx.states[table.name], window)
    files = newfiles.files_since(table.uri, since)
    out.since_version, out.note, out.files_live = files.since, files.note, files.live
    if files.since is None:  # every live file read (asked, or the baseline version is gone)
        out.mode = "full"
    out.version_before = out.version_after = files.version
    matches = sweep_search.find(policy, engine, table, info, ctx.entries, secret, files.files, out.mode == "full")
    _read_counts(out, matches)
    unmatched = sweep_search.unmatchable(policy, ctx.entries)
    if unmatched:
        out.note = "; ".join(filter(None, [out.note, f"{unmatched} erasure(s) listed before the policy declared "
                                           "identifier kinds: their id has no kind, no column is matched with it"]))
    out.entries_matched = len(set().union(*(m.request_ids for m in matches)))
    several = len(matches) > 1 or policy.typed
    commits: list[dict[str, Any]] = []
    for m in matches:
        rows = engine.reader.count_rows(table.uri, where_in=(m.view.subject, m.keys.keys)) if len(m.keys.keys) \
            else 0
        out.rows += rows
        if several:
            out.columns[m.view.subject] = {"kind": m.view.kind, "role": m.view.subject_columns[0].role, "rows": rows,
                                           "entries_matched": len(m.request_ids)}
        if dry_run or not rows:
            continue
        metadata = {"dsr.sweep_id": sweep_id, "dsr.table": table.name, "dsr.rows_matched": str(rows),
                    **({"dsr.column": m.view.subject} if len(matches) > 1 else {})}
        result = engine.erase(*plan_commit(policy, engine, m.view, info, m.keys, metadata))
        if result.committed:
            commits.append({"column": m.view.subject, "version_before": result.version_before,
                            "version_after": result.version_after, "rows_deleted": result.rows_deleted,
                            "rows_updated": result.rows_updated})
    if dry_run:
        return out
    if out.rows:
        _verify(policy, table, sweep_search.people_of(matches), commits, out, engine.reader)
    _record(policy, sweep_id, table, out, ctx, files.version)
    return out


def _read_counts(out: TableSweep, matches: Sequence[sweep_search.ColumnMatch]) -> None:
    """What the search read: the files (the same for every column), the most of any column for the rest."""
    found = [m.found for m in matches]
    out.files_scanned = max((f.files_scanned for f in found), default=0)
    out.files_matched = None if any(f.files_matched is None for f in found) else \
        max((int(f.files_matched or 0) for f in found), default=0)
    out.rows_scanned = None if any(f.rows_scanned is None for f in found) else \
        max((int(f.rows_scanned or 0) for f in found), default=0)


def _verify(policy: Policy, table: TableSpec, people: keys_.People, commits: Sequence[dict[str, Any]],
            out: TableSweep, reader: Reader) -> None:
    """The sweep's commits proved like erase commits: the GE suites on the engine's read-back over every subject
    column (the identifiers found, of each column's kind), checked against evidence it did not produce."""
    if commits:
        out.version_before, out.version_after = commits[0]["version_before"], commits[-1]["version_after"]
    several = len(table.views()) > 1
    reconcile = [{"commits": list(commits)}] if several else list(commits)
    check = check_table(policy, table, people, reconcile, reader)
    out.success = check.success
    out.suites = failed_suites(check.suites)


def _record(policy: Policy, sweep_id: str, table: TableSpec, out: TableSweep, ctx: Context, read: int) -> None:
    checked = out.version_after if out.version_after is not None else read
    audit.append(policy, [audit.AuditEvent("table_swept", request_id=sweep_id, run_id=sweep_id,
                                           table_name=table.name, details={
        **{k: v for k, v in out.as_dict().items() if k != "table"}, "spec": spec_of(table),
        "checked_version": checked, "started_at": ctx.started.isoformat()})])
    log.info("sweep %s: table %s %s: %d file(s) read, %d row(s) %s", sweep_id, table.name, out.mode,
             out.files_scanned, out.rows, "erased" if out.success else "FAILED verification")


def sweepable(policy: Policy) -> list[str]:
    """The tables a sweep can apply erasures to: every delete/anonymise table (a retained one keeps its rows)."""
    return [t.name for t in policy.tables if t.erase is not Strategy.RETAIN]


def sweep(policy: Policy, engine: Engine, sweep_id: str, *, tables: Sequence[str] | None = None,
          window: Window = Window(), dry_run: bool = False) -> SweepReport:
    """Sweep the chosen tables (default: every delete/anonymise table); a table that fails is reported and
    the others go on. A sweep that writes holds a shared lease (:mod:`dsr.core.lease`): never beside a purge."""
    names = list(tables) if tables else sweepable(policy)
    with contextlib.nullcontext() if dry_run else lease.shared(policy, sweep_id, "sweep"):
        return _sweep(policy, engine, sweep_id, names, window, dry_run)


def _sweep(policy: Policy, engine: Engine, sweep_id: str, names: Sequence[str], window: Window,
           dry_run: bool) -> SweepReport:
    ctx = load_context(policy, dry_run=dry_run)
    report = SweepReport(sweep_id, dry_run)
    for name in names:
        progress.started("sweep", name)
        try:
            report.tables.append(sweep_table(policy, engine, sweep_id, name, ctx, window=window, dry_run=dry_run))
        except DsrError as exc:
            report.tables.append(_failed(policy, name, str(exc)))
        except Exception as exc:  # a foreign failure: one line, never an id
            report.tables.append(_failed(policy, name, access.error_line(exc)))
        with progress.dry_run(dry_run):
            progress.finished("sweep", name, report.tables[-1].as_dict(), report.tables[-1].error)
    return report


def _failed(policy: Policy, name: str, error: str) -> TableSweep:
    return TableSweep(name, strategy=str(policy.table(name).erase), success=False, error=error)
