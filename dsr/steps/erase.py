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
from typing import Any

from dsr.core import audit, control, gate
from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec
from dsr.delta import access, commits
from dsr.engines.base import CommitResult, Engine, ErasePlan
from dsr.engines.reading import Reader
from dsr.errors import scrub
from dsr.plan import erasure
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


def _rows_now(
    table: TableSpec, info: access.TableInfo, reqs: Sequence[control.Request], reader: Reader, *,
    partitions: bool = False,
) -> tuple[erasure.SubjectKeys, dict[Any, int], dict[str, int], dict[Any, set[tuple[Any, ...]]]]:
    """The subjects' rows in the table now, counted where the engine reads (one pushed-down read of the subject
    column and, with ``partitions``, the table's prunable partition columns, grouped): (keys, rows per key, rows
    per request, per key the partitions holding its rows)."""
    keys = erasure.subject_keys([(r.request_id, r.subject_id) for r in reqs], info.schema.field(table.subject).type)
    columns = erasure.prunable_partitions(table, info.schema, info.partition_columns) if partitions else []
    per_key: dict[Any, int] = defaultdict(int)
    where: dict[Any, set[tuple[Any, ...]]] = defaultdict(set)
    groups = reader.group_counts(table.uri, [table.subject, *columns], where_in=(table.subject, keys.keys),
                                 info=info)
    values = groups.column(table.subject).to_pylist()
    parts = list(zip(*(groups.column(c).to_pylist() for c in columns), strict=True)) if columns else \
        [()] * len(values)
    for value, part, n in zip(values, parts, groups.column("count_all").to_pylist(), strict=True):
        per_key[value] += int(n)
        where[value].add(part)
    rows = {r.request_id: per_key.get(keys.by_request.get(r.request_id), 0) for r in reqs}
    return keys, per_key, rows, dict(where)


def _partitions(table: TableSpec, info: access.TableInfo, where: dict[Any, set[tuple[Any, ...]]],
                keys: Any) -> tuple[dict[str, Any], ...]:
    """The partitions (prunable columns -> values) holding the rows of ``keys``: the MERGE reads only them."""
    columns = erasure.prunable_partitions(table, info.schema, info.partition_columns)
    if not columns:
        return ()
    found = sorted({p for k in keys for p in where.get(k, ())}, key=repr)
    return tuple(dict(zip(columns, p, strict=True)) for p in found)


def _retained_rows(table: TableSpec, reqs: Sequence[control.Request], reader: Reader) -> dict[str, int | None]:
    """Rows each request's subject has in a retained table; None when the table cannot be read."""
    from dsr.errors import TableError

    try:
        return dict(_rows_now(table, access.table_info(table.uri), reqs, reader)[2])
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
    """Find commits of a dead run that erased these requests but whose audit events were lost."""
    want = set(pending)
    recovered: list[audit.AuditEvent] = []
    for commit in engine.history(table.uri, 50):
        ids = str(commit.get("dsr.request_ids") or "")
        if not ids or commit.get("dsr.table") != table.name:
            continue
        hit = want & set(ids.split(","))
        if not hit:
            continue
        m = commit.get("operationMetrics") or {}
        rows = json.loads(str(commit.get("dsr.rows_by_request") or "{}"))
        version = int(commit["version"])
        result = CommitResult(
            version_before=version - 1, version_after=version,
            rows_deleted=int(m.get("num_target_rows_deleted", 0)),
            rows_updated=int(m.get("num_target_rows_updated", 0)),
        )
        for rid in sorted(hit):
            recovered.append(audit.AuditEvent(
                "table_erased", request_id=rid, run_id=batch.run_id, table_name=table.name,
                details={
                    "strategy": table.erase, "rows": int(rows.get(rid, 0)),
                    "rows_matched_total": int(commit.get("dsr.rows_matched") or 0),
                    "rows_deleted": result.rows_deleted, "rows_updated": result.rows_updated,
                    **_commit_effect(table.uri, result),
                    "version_before": version - 1, "version_after": version,
                    "subject_matchable": True, "engine": engine.name, "spec": spec_of(table),
                    "recovered_from_commit": True, "commit_run_id": commit.get("dsr.run_id"),
                },
            ))
        want -= hit
    batch.record(recovered)
    return sorted(set(pending) - want)


def erase_table(policy: Policy, engine: Engine, run_id: str, table_name: str) -> dict[str, Any]:
    """ONE Delta commit erasing (or anonymising) every erase request of the run in one table.

    The table passes the protocol gate first (refused: the requests fail with the reason, nothing written).
    Then one read of the subjects' rows decides: a request whose rows are present is erased, whatever the
    audit log says (rows appended since an earlier erase are erased again); a request already erased with no
    rows left is done.
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

    info = verdict.info
    assert info is not None
    _, per_key, rows_now, where = _rows_now(table, info, reqs, engine.reader, partitions=True)
    todo = [r for r in reqs if r.request_id not in done or rows_now[r.request_id] > 0]
    if not todo:
        return {"table": table_name, "requests": 0, "already_done": len(reqs)}
    lost = [r.request_id for r in todo if r.request_id not in done and rows_now[r.request_id] == 0]
    recovered = _recover_from_history(batch, engine, table, lost) if lost else []
    todo = [r for r in todo if r.request_id not in recovered]
    if not todo:
        return {"table": table_name, "requests": 0, "recovered": len(recovered)}
    return _commit(batch, engine, table, info, todo, per_key, rows_now, done, where)


def _retain(batch: Batch, table: TableSpec, todo: Sequence[control.Request], reader: Reader) -> dict[str, Any]:
    """A retained table is not changed: record, per request, that it keeps its rows (and how many) and why."""
    retained = _retained_rows(table, todo, reader)
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
    per_key: dict[Any, int], rows_now: dict[str, int], done: dict[str, dict[str, Any]],
    where: dict[Any, set[tuple[Any, ...]]],
) -> dict[str, Any]:
    """The erase commit of ``todo`` (when any of their rows exist), then its audit events."""
    ctype = info.schema.field(table.subject).type
    todo_keys = erasure.subject_keys([(r.request_id, r.subject_id) for r in todo], ctype)
    matched = sum(per_key.get(v, 0) for v in set(todo_keys.by_request.values()))
    request_ids = sorted(r.request_id for r in todo)
    rows_by_request = {rid: rows_now[rid] for rid in request_ids}
    try:
        if len(todo_keys.keys) and matched:
            metadata = {
                "dsr.run_id": batch.run_id, "dsr.table": table.name, "dsr.request_ids": ",".join(request_ids),
                "dsr.rows_by_request": json.dumps(rows_by_request, sort_keys=True), "dsr.rows_matched": str(matched),
            }
            within = _partitions(table, info, where, set(todo_keys.by_request.values()))
            result = engine.erase(*plan_commit(batch.policy, engine, table, info, todo_keys, metadata, within))
        else:
            result = CommitResult(version_before=info.version, version_after=info.version)
    except Exception as exc:
        reason = scrub(f"table '{table.name}': erase failed on engine {engine.name}: {access.error_line(exc)}",
                       batch.subjects)
        batch.refuse(table, request_ids, "erase", reason, final=False)
        raise
    effect = _commit_effect(table.uri, result)
    spec = spec_of(table)  # the table's spec: one for every request
    batch.record([
        audit.AuditEvent(
            "table_erased", request_id=r.request_id, run_id=batch.run_id, table_name=table.name,
            details={
                "strategy": table.erase, "rows": rows_by_request[r.request_id], "rows_matched_total": matched,
                "rows_deleted": result.rows_deleted, "rows_updated": result.rows_updated, **effect,
                "version_before": result.version_before, "version_after": result.version_after,
                "subject_matchable": r.request_id not in todo_keys.uncastable, "engine": engine.name,
                "repeat": r.request_id in done, "spec": spec,
            },
        )
        for r in todo
    ])
    log.info("run %s: table %s %s: %d row(s) for %d request(s), files rewritten %d, added %d, "
             "deletion vectors %d, version %d -> %d", batch.run_id, table.name, table.erase, matched, len(todo),
             effect["files_rewritten"], effect["files_added"], effect["dv_marked"],
             result.version_before, result.version_after)
    return {"table": table.name, "requests": len(todo), "strategy": table.erase, "rows": matched,
            "files_rewritten": effect["files_rewritten"], "files_added": effect["files_added"],
            "dv_marked": effect["dv_marked"], "version_before": result.version_before,
            "version_after": result.version_after}


def plan_commit(
    policy: Policy, engine: Engine, table: TableSpec, info: access.TableInfo, keys: erasure.SubjectKeys,
    metadata: dict[str, str], partitions: tuple[dict[str, Any], ...] = (),
) -> tuple[ErasePlan, Any]:
    """The engine's plan (operation, mask SQL in its dialect, commit metadata, the partitions to restrict the
    MERGE to) and the MERGE source."""
    anonymise = table.erase is Strategy.ANONYMISE
    key = policy.pseudonym_key() if policy.needs_key and anonymise else None
    source = erasure.build_source(table, info.schema, keys, key)
    plan = ErasePlan(
        uri=table.uri, subject=table.subject, operation=str(table.erase.operation),
        updates=erasure.build_updates(table, info.schema, engine.dialect) if anonymise else {},
        metadata=metadata, partitions=partitions,
    )
    return plan, source
