"""Step 4, erase: one Delta commit per table for every erasure of the run (delete or anonymise), or a record
that the table retains the rows.

The table passes the protocol gate first (refused: the requests fail with the reason, nothing written). Then
one read of the subjects' rows decides: a request whose rows are present is erased, whatever the audit log
says (rows appended since an earlier erase are erased again); a request already erased with no rows left is
done. A commit whose audit event was lost when a run died is recovered from the Delta log (commits carry the
request ids, never subject ids). What the commit did to files is read from the log, not from the engine.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core import audit, control, gate
from dsr.core.identifiers import IMPLICIT
from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec
from dsr.delta import access, commits
from dsr.engines.base import CommitResult, Engine, ErasePlan
from dsr.engines.reading import Reader
from dsr.errors import scrub
from dsr.plan import erasure
from dsr.plan import keys as keys_
from dsr.steps.batch import Batch
from dsr.steps.sweep_state import spec_of

__all__ = ["erase_table", "plan_commit"]

log = logging.getLogger("dsr.steps")


def _erase_events(batch: Batch, table: str) -> dict[str, dict[str, Any]]:
    """request id -> details of its latest erase (or retain) event in this table."""
    out: dict[str, dict[str, Any]] = {}
    for rid, events in batch.events_of(("table_erased", "table_retained"), table).items():
        for e in events:
            out[rid] = e["details"]
    return out


_Read = tuple[erasure.SubjectKeys, dict[Any, int], dict[str, int], dict[Any, set[tuple[Any, ...]]]]


def _rows_now(
    policy: Policy, view: TableSpec, info: access.TableInfo, people: keys_.People, reader: Reader, *,
    partitions: bool = False,
) -> _Read:
    """The people's rows in one subject column of the table now, counted where the engine reads (one pushed-down
    read of the column and, with ``partitions``, the table's prunable partition columns, grouped): (keys, rows
    per key, rows per request, per key the partitions holding its rows)."""
    keys = keys_.keys_for(policy, view, people, info, reader)
    columns = erasure.prunable_partitions(view, info.schema, info.partition_columns) if partitions else []
    per_key: dict[Any, int] = defaultdict(int)
    where: dict[Any, set[tuple[Any, ...]]] = defaultdict(set)
    if len(keys.keys):
        groups = reader.group_counts(view.uri, [view.subject, *columns], where_in=(view.subject, keys.keys),
                                     info=info)
        values = groups.column(view.subject).to_pylist()
        parts = list(zip(*(groups.column(c).to_pylist() for c in columns), strict=True)) if columns else \
            [()] * len(values)
        for value, part, n in zip(values, parts, groups.column("count_all").to_pylist(), strict=True):
            per_key[value] += int(n)
            where[value].add(part)
    rows = {rid: keys.rows_of(rid, per_key) for rid, _ in people}
    return keys, per_key, rows, dict(where)


def _partitions(table: TableSpec, info: access.TableInfo, where: dict[Any, set[tuple[Any, ...]]],
                keys: Any) -> tuple[dict[str, Any], ...]:
    """The partitions (prunable columns -> values) holding the rows of ``keys``: the MERGE reads only them."""
    columns = erasure.prunable_partitions(table, info.schema, info.partition_columns)
    if not columns:
        return ()
    found = sorted({p for k in keys for p in where.get(k, ())}, key=repr)
    return tuple(dict(zip(columns, p, strict=True)) for p in found)


def _retained_rows(policy: Policy, table: TableSpec, reqs: Sequence[control.Request],
                   reader: Reader) -> dict[str, int | None]:
    """Rows each request's person has in a retained table (over its subject columns); None when it cannot be
    read."""
    from dsr.errors import TableError

    try:
        info = access.table_info(table.uri)
        out: dict[str, int | None] = {r.request_id: 0 for r in reqs}
        for view in table.views():
            for rid, n in _rows_now(policy, view, info, keys_.people_of(reqs), reader)[2].items():
                out[rid] = (out[rid] or 0) + n
        return out
    except TableError:
        return {r.request_id: None for r in reqs}


def _commit_effect(uri: str, result: CommitResult) -> dict[str, Any]:
    """What the commit did to files, read from the log by the access layer (not from the engine's metrics)."""
    if not result.committed:
        return {"files_removed": 0, "files_added": 0, "files_rewritten": 0, "dv_marked": 0, "cdc_files": 0}
    c = commits.commit_actions(uri, result.version_after)
    return {"files_removed": len(c.removes), "files_added": c.files_added, "files_rewritten": c.files_rewritten,
            "dv_marked": c.dv_marked, "cdc_files": c.cdc_files}


def _recover_from_history(batch: Batch, engine: Engine, table: TableSpec, pending: Sequence[str]) -> list[str]:
    """Find commits of a dead run that erased these requests but whose audit events were lost (a table with
    several subject columns: every commit of that run, one per column)."""
    want = set(pending)
    found: dict[str, list[dict[str, Any]]] = {}
    for commit in engine.history(table.uri, 50):  # newest first
        ids = str(commit.get("dsr.request_ids") or "")
        if not ids or commit.get("dsr.table") != table.name:
            continue
        for rid in want & set(ids.split(",")):
            mine = found.setdefault(rid, [])
            if not mine or mine[0].get("dsr.run_id") == commit.get("dsr.run_id"):
                mine.append(commit)
    recovered: list[audit.AuditEvent] = []
    for rid, commits_ in sorted(found.items()):
        parts = [_part_of(table, commit) for commit in reversed(commits_)]  # oldest first
        details = _details(table, engine, parts, rid)
        details.update({"recovered_from_commit": True, "commit_run_id": commits_[0].get("dsr.run_id")})
        recovered.append(audit.AuditEvent("table_erased", request_id=rid, run_id=batch.run_id,
                                          table_name=table.name, details=details))
        want.discard(rid)
    batch.record(recovered)
    return sorted(set(pending) - want)


@dataclass
class _Part:
    """One subject column's erase commit (or none: ``result`` not committed)."""

    column: str
    result: CommitResult
    effect: dict[str, Any]
    rows: dict[str, int]  # request id -> its rows in this column before
    matched: int
    kind: str = ""
    role: str = "owner"
    matchable: set[str] = field(default_factory=set)


def _details(table: TableSpec, engine: Engine, parts: Sequence[_Part], rid: str) -> dict[str, Any]:
    """A request's ``table_erased`` details over the table's subject columns: totals, the first commit's version
    before and the last's after, and per column its kind, role, rows and commit."""
    made = [p for p in parts if p.result.committed] or list(parts[:1])
    out: dict[str, Any] = {
        "strategy": table.erase, "rows": sum(p.rows.get(rid, 0) for p in parts),
        "rows_matched_total": sum(p.matched for p in parts),
        "rows_deleted": sum(p.result.rows_deleted for p in parts),
        "rows_updated": sum(p.result.rows_updated for p in parts),
        **{k: sum(int(p.effect[k]) for p in parts) for k in
           ("files_removed", "files_added", "files_rewritten", "dv_marked", "cdc_files")},
        "version_before": made[0].result.version_before if made else None,
        "version_after": made[-1].result.version_after if made else None,
        "subject_matchable": any(rid in p.matchable for p in parts) if parts and parts[0].kind else True,
        "engine": engine.name, "spec": spec_of(table),
    }
    if len(table.subject_columns) > 1 or table.subject_columns[0].kind != IMPLICIT:
        columns: dict[str, dict[str, Any]] = {}
        for p in parts:
            entry = columns.setdefault(p.column, {"kind": p.kind, "role": p.role, "rows": 0, "matchable": False})
            entry["rows"] += p.rows.get(rid, 0)
            entry["matchable"] = entry["matchable"] or rid in p.matchable
        out["columns"] = columns
        out["commits"] = [{"column": p.column, "version_before": p.result.version_before,
                           "version_after": p.result.version_after, "rows_deleted": p.result.rows_deleted,
                           "rows_updated": p.result.rows_updated, "rows_matched": p.matched,
                           "operation": "delete" if p.result.rows_deleted else "update"}
                          for p in parts if p.result.committed]
    return out


def erase_table(policy: Policy, engine: Engine, run_id: str, table_name: str) -> dict[str, Any]:
    """The erase commits of every erase request of the run in one table: ONE Delta commit per subject column
    holding some of their rows (owners first: delete or anonymise the row; then mentions: mask the column), or
    a record that the table retains the rows.

    The table passes the protocol gate first (refused: the requests fail with the reason, nothing written).
    Then one read of the people's rows per subject column decides: a request whose rows are present is erased,
    whatever the audit log says (rows appended since an earlier erase are erased again); a request already
    erased with no rows left is done.
    """
    batch = Batch.load(policy, run_id)
    batch.keep_lease()
    table = policy.table(table_name)
    reqs = batch.of("erase")
    if not reqs:
        return {"table": table_name, "requests": 0}
    done = _erase_events(batch, table.name)
    if table.erase is Strategy.RETAIN:
        return _retain(batch, table, [r for r in reqs if r.request_id not in done], engine.reader)

    verdict = gate.check_table(table, engine.support)
    if not verdict.ok:
        batch.refuse(table, [r.request_id for r in reqs], "erase", verdict.reason, final=True)
        return {"table": table_name, "requests": len(reqs), "refused": verdict.reason}
    unmatched = gate.normalisation_refusal(policy, table, engine.reader, engine.name)
    if unmatched:
        batch.refuse(table, [r.request_id for r in reqs], "erase", unmatched, final=True)
        return {"table": table_name, "requests": len(reqs), "refused": unmatched}

    info = verdict.info
    assert info is not None
    people = keys_.people_of(reqs)
    rows_now: dict[str, int] = {r.request_id: 0 for r in reqs}
    read: dict[str, _Read] = {}  # per subject column, at info.version: the first commit's planning reuses it
    for view in table.views():
        read[view.subject] = _rows_now(policy, view, info, people, engine.reader, partitions=True)
        for rid, n in read[view.subject][2].items():
            rows_now[rid] += n
    todo = [r for r in reqs if r.request_id not in done or rows_now[r.request_id] > 0]
    if not todo:
        return {"table": table_name, "requests": 0, "already_done": len(reqs)}
    lost = [r.request_id for r in todo if r.request_id not in done and rows_now[r.request_id] == 0]
    recovered = _recover_from_history(batch, engine, table, lost) if lost else []
    todo = [r for r in todo if r.request_id not in recovered]
    if not todo:
        return {"table": table_name, "requests": 0, "recovered": len(recovered)}
    return _commit(batch, engine, table, info, todo, done, read)


def _retain(batch: Batch, table: TableSpec, todo: Sequence[control.Request], reader: Reader) -> dict[str, Any]:
    """A retained table is not changed: record, per request, that it keeps its rows (and how many) and why."""
    retained = _retained_rows(batch.policy, table, todo, reader)
    spec = spec_of(table)
    batch.record([
        audit.AuditEvent("table_retained", request_id=r.request_id, run_id=batch.run_id, table_name=table.name,
                         details={"strategy": Strategy.RETAIN.value, "reason": table.reason,
                                  "rows": retained.get(r.request_id), "spec": spec})
        for r in todo
    ])
    return {"table": table.name, "requests": len(todo), "strategy": Strategy.RETAIN.value}


def _commit(
    batch: Batch, engine: Engine, table: TableSpec, info: access.TableInfo, todo: Sequence[control.Request],
    done: dict[str, dict[str, Any]], read: dict[str, _Read],
) -> dict[str, Any]:
    """The erase commits of ``todo``, one per subject column holding some of their rows (a column's rows read
    again once an earlier commit of this table changed it), then their audit events. ``read``: each column's
    rows at ``info``'s version, of every request of the batch."""
    request_ids = sorted(r.request_id for r in todo)
    people = keys_.people_of(todo)
    parts: list[_Part] = []
    fresh = info.version
    try:
        for view in table.views():
            sc = view.subject_columns[0]
            if info.version == fresh:  # nothing committed since the read: its counts hold (only todo's matter)
                every, per_key, all_rows, where = read[view.subject]
                keys, rows = erasure.only(every, request_ids), {rid: all_rows.get(rid, 0) for rid in request_ids}
            else:
                keys, per_key, rows, where = _rows_now(batch.policy, view, info, people, engine.reader,
                                                       partitions=True)
            matched = sum(per_key.get(v, 0) for v in keys.values_of(request_ids))
            if len(keys.keys) and matched:
                metadata = {
                    "dsr.run_id": batch.run_id, "dsr.table": table.name, "dsr.request_ids": ",".join(request_ids),
                    "dsr.rows_by_request": json.dumps(rows, sort_keys=True), "dsr.rows_matched": str(matched),
                    **({"dsr.column": view.subject} if len(table.subject_columns) > 1 else {}),
                }
                within = _partitions(view, info, where, keys.values_of(request_ids))
                result = engine.erase(*plan_commit(batch.policy, engine, view, info, keys, metadata, within))
                if result.committed:
                    info = access.table_info(table.uri)
            else:
                result = CommitResult(version_before=info.version, version_after=info.version)
            matchable = set(request_ids) - set(keys.uncastable)
            parts.append(_Part(view.subject, result, _commit_effect(table.uri, result), rows, matched, sc.kind,
                               sc.role, matchable))
    except Exception as exc:
        reason = scrub(f"table '{table.name}': erase failed on engine {engine.name}: {access.error_line(exc)}",
                       batch.subjects)
        batch.refuse(table, request_ids, "erase", reason, final=False)
        raise
    parts = _earlier(batch, engine, table, request_ids, parts) + parts
    batch.record([
        audit.AuditEvent("table_erased", request_id=r.request_id, run_id=batch.run_id, table_name=table.name,
                         details={**_details(table, engine, parts, r.request_id), "repeat": r.request_id in done})
        for r in todo
    ])
    total = _details(table, engine, parts, "")
    matched_all = sum(p.matched for p in parts)
    log.info("run %s: table %s %s: %d row(s) for %d request(s), files rewritten %d, added %d, "
             "deletion vectors %d, version %s -> %s", batch.run_id, table.name, table.erase, matched_all, len(todo),
             total["files_rewritten"], total["files_added"], total["dv_marked"],
             total["version_before"], total["version_after"])
    return {"table": table.name, "requests": len(todo), "strategy": table.erase, "rows": matched_all,
            "files_rewritten": total["files_rewritten"], "files_added": total["files_added"],
            "dv_marked": total["dv_marked"], "version_before": total["version_before"],
            "version_after": total["version_after"]}


def _part_of(table: TableSpec, commit: dict[str, Any]) -> _Part:
    """One erase commit as the table's history records it (its metadata: the column, the rows per request; its
    metrics), for an audit event written after the run that made it died."""
    m = commit.get("operationMetrics") or {}
    version = int(commit["version"])
    result = CommitResult(version_before=version - 1, version_after=version,
                          rows_deleted=int(m.get("num_target_rows_deleted", 0)),
                          rows_updated=int(m.get("num_target_rows_updated", 0)))
    column = str(commit.get("dsr.column") or table.subject)
    sc = next((c for c in table.subject_columns if c.column == column), table.subject_columns[0])
    rows = {str(k): int(v) for k, v in json.loads(str(commit.get("dsr.rows_by_request") or "{}")).items()}
    return _Part(column, result, _commit_effect(table.uri, result), rows, int(commit.get("dsr.rows_matched") or 0),
                 sc.kind, sc.role, set(str(commit.get("dsr.request_ids") or "").split(",")))


def _earlier(batch: Batch, engine: Engine, table: TableSpec, request_ids: Sequence[str],
             parts: Sequence[_Part]) -> list[_Part]:
    """The commits an earlier attempt of this run made in this table for these requests, one per subject column,
    before it died (their audit event was never written): a table with several subject columns is several
    commits, and the event must name every one."""
    if len(table.subject_columns) < 2:
        return []
    made = {p.result.version_after for p in parts if p.result.committed}
    recorded = {int(c["version_after"]) for evs in batch.events_of(("table_erased",), table.name).values()
                for e in evs for c in (e["details"].get("commits") or [])}
    out: list[_Part] = []
    for commit in engine.history(table.uri, 50):
        version = int(commit["version"])
        if commit.get("dsr.run_id") != batch.run_id or commit.get("dsr.table") != table.name or version in made \
                or version in recorded or not set(request_ids) & set(str(commit.get("dsr.request_ids")).split(",")):
            continue
        out.append(_part_of(table, commit))
    return sorted(out, key=lambda p: p.result.version_after)


def plan_commit(
    policy: Policy, engine: Engine, table: TableSpec, info: access.TableInfo, keys: erasure.SubjectKeys,
    metadata: dict[str, str], partitions: tuple[dict[str, Any], ...] = (),
) -> tuple[ErasePlan, Any]:
    """The engine's plan (operation, mask SQL in its dialect, commit metadata, the partitions to restrict the
    MERGE to) and the MERGE source. ``table``: one subject column's view (:meth:`TableSpec.views`)."""
    anonymise = table.erase is Strategy.ANONYMISE
    key = policy.pseudonym_key() if policy.needs_key and anonymise else None
    source = erasure.build_source(table, info.schema, keys, key)
    plan = ErasePlan(
        uri=table.uri, subject=table.subject, operation=str(table.erase.operation),
        updates=erasure.build_updates(table, info.schema, engine.dialect) if anonymise else {},
        metadata=metadata, partitions=partitions,
    )
    return plan, source
