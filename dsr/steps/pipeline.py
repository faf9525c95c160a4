"""One engine-agnostic run: claim -> export -> erase -> verify -> complete.

Each step is a function of (policy, engine, run_id[, table]) so ``dsr run`` calls them in a row and the
Airflow DAG maps them per table; state passes through the control table and the audit log, never through
return values, so every step can be retried on its own. Steps return small dicts of counts (no subject ids).

Every read of a data table goes through the one access layer (:mod:`dsr.delta.access`); the engine only writes.
Before any write, each table passes the protocol gate (:mod:`dsr.core.gate`): a table the reader or the engine
cannot handle is refused, its requests fail with the reason (table, engine, feature) at once and for good.

Idempotency means "the erased keys are absent from this table now": each erase step first reads the
subjects' rows; a request whose rows are present (again) is erased (again), whatever the audit log says, and
a request with an erase event and no rows left is done. A commit whose audit event was lost when a run died
is recovered from the Delta log (commits carry the request ids).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core import audit, control, coverage, gate
from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec
from dsr.core.subjects import uncastable_note
from dsr.delta import access
from dsr.delta import tables as deltautil
from dsr.delta.features import READ
from dsr.engines.base import CommitResult, Engine, ErasePlan
from dsr.errors import DsrError, StepError, VerificationError
from dsr.exports import writer as exporting
from dsr.plan import erasure
from dsr.steps import nearmatch
from dsr.verify.checks import check_table

__all__ = [
    "RunReport",
    "claim_batch",
    "complete_batch",
    "erase_table",
    "export_table",
    "finish_exports",
    "run",
    "safe_error",
    "verify_table",
]

log = logging.getLogger("dsr.steps.pipeline")

def _batch(policy: Policy, run_id: str, kind: str | None = None) -> list[control.Request]:
    """The requests this run holds (status running under run_id)."""
    return [
        r for r in control.list_requests(policy, status="running")
        if r.run_id == run_id and (kind is None or r.kind == kind)
    ]


def scrub(text: str, subjects: Iterable[str]) -> str:
    """Replace any subject id in an error text by a placeholder (longest first)."""
    for sid in sorted(set(subjects), key=len, reverse=True):
        if sid:
            text = text.replace(sid, "<subject>")
    return text


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
            subjects = [r.subject_id for r in control.list_requests(policy) if r.run_id == run_id]
        except Exception:
            subjects = []
    text = scrub(access.error_line(exc), subjects)
    if policy is None or not subjects:
        text = f"{type(exc).__name__} (message withheld: it could not be checked for subject ids)"
    return StepError(text)


# --- claim ------------------------------------------------------------------------------------------------


def claim_batch(policy: Policy, run_id: str | None = None) -> dict[str, Any]:
    """Claim every claimable request for this run. Returns run id, counts and the tables to process.

    Refuses (CoverageError, nothing claimed) while a personal table is neither covered nor exempt, and
    (InputError) when the exports location is unusable. Removes the export parts of runs no longer alive.
    """
    coverage.require_covered(policy)
    exporting.check_location(policy.exports)
    run_id = run_id or control.new_run_id()
    # part files of runs that are no longer alive (killed mid-export) hold personal data: remove them first
    exporting.remove_stale_parts(policy.exports, control.live_run_ids(policy) | {run_id})
    control.claim(policy, run_id)
    held = _batch(policy, run_id)  # includes what an earlier attempt of this same run claimed
    exports = [r for r in held if r.kind == "export"]
    erasures = [r for r in held if r.kind == "erase"]
    log.info("run %s: %d export and %d erase request(s) claimed", run_id, len(exports), len(erasures))
    return {
        "run_id": run_id,
        "requests": len(held),
        "exports": len(exports),
        "erasures": len(erasures),
        "export_tables": [t.name for t in policy.tables if t.export] if exports else [],
        "erase_tables": [t.name for t in policy.tables] if erasures else [],
    }


# --- export -----------------------------------------------------------------------------------------------


def _refuse(
    policy: Policy, run_id: str, table: TableSpec, request_ids: Sequence[str], step: str, reason: str,
    *, final: bool,
) -> None:
    """Record that a table could not be processed for these requests (the reason names no subject)."""
    log.error("run %s: %s of table %s: %s", run_id, step, table.name, reason)
    audit.append(policy, [
        audit.AuditEvent("table_failed", request_id=rid, run_id=run_id, table_name=table.name,
                         details={"step": step, "reason": reason[:1000], "final": final})
        for rid in request_ids
    ])


def export_table(policy: Policy, engine: Engine, run_id: str, table_name: str) -> dict[str, Any]:
    """ONE scan of one table for every export request of the run; rows go to the table's part files.

    A table the reader cannot read is refused: its export requests fail with the reason, for good.
    """
    control.renew_lease(policy, run_id)
    table = policy.table(table_name)
    reqs = _batch(policy, run_id, "export")
    if not reqs or not table.export:
        return {"table": table_name, "requests": 0, "rows": 0}
    verdict = gate.check_table(table, engine.support, (READ,))
    if not verdict.ok:
        _refuse(policy, run_id, table, [r.request_id for r in reqs], "export", verdict.reason, final=True)
        return {"table": table_name, "requests": len(reqs), "refused": verdict.reason}
    info = verdict.info
    assert info is not None  # an accepted verdict always carries the metadata it judged
    schema = info.schema
    keys = erasure.subject_keys([(r.request_id, r.subject_id) for r in reqs], schema.field(table.subject).type)
    by_key: dict[Any, list[str]] = defaultdict(list)
    for rid, value in keys.by_request.items():
        by_key[value].append(rid)
    columns = [c for c in schema.names if c not in table.never_export]
    with exporting.PartWriter(policy.exports, run_id, table.name, [r.request_id for r in reqs]) as parts:
        if len(keys.keys):
            for batch in access.scan(table.uri, columns, where_in=(table.subject, keys.keys), info=info):
                for row in batch.to_pylist():
                    for rid in by_key.get(row[table.subject], ()):
                        parts.write(rid, row)
    audit.append(policy, [
        audit.AuditEvent(
            "table_exported", request_id=r.request_id, run_id=run_id, table_name=table.name,
            details={"rows": parts.rows[r.request_id], "version": info.version,
                     "subject_matchable": r.request_id not in keys.uncastable,
                     "columns_excluded": list(table.never_export)},
        )
        for r in reqs
    ])
    total = sum(parts.rows.values())
    log.info("run %s: exported table %s (%d rows for %d request(s))", run_id, table.name, total, len(reqs))
    return {"table": table_name, "requests": len(reqs), "rows": total, "version": info.version}


def _table_failures(events: Sequence[dict[str, Any]], run_id: str | None = None) -> dict[str, dict[str, Any]]:
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


def _exported_tables(events: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["table_name"]: e["details"] for e in events if e["event"] == "table_exported"}


def finish_exports(policy: Policy, run_id: str) -> dict[str, Any]:
    """Write one document per export request and complete it; hold back erasures that must wait."""
    control.renew_lease(policy, run_id)
    reqs = _batch(policy, run_id, "export")
    tables = [t.name for t in policy.tables if t.export]
    done: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    now = dt.datetime.now(dt.UTC)
    events = audit.events_by_request(policy, [r.request_id for r in reqs])
    final: list[str] = []
    ready: dict[str, tuple[control.Request, dict[str, dict[str, Any]]]] = {}
    for r in reqs:
        refused = {t: d for t, d in _table_failures(events[r.request_id], run_id).items() if d.get("final")}
        if refused:
            failed[r.request_id] = "export impossible: " + "; ".join(d["reason"] for d in refused.values())
            final.append(r.request_id)
            continue
        exported = _exported_tables(events[r.request_id])
        missing = [t for t in tables if t not in exported]
        if missing:
            failed[r.request_id] = f"export incomplete: table(s) not scanned: {', '.join(missing)}"
            continue
        ready[r.request_id] = (r, exported)
    outcomes, review = _outcomes(policy, {
        rid: (r.subject_id, sum(int(exported[t].get("rows", 0)) for t in tables))
        for rid, (r, exported) in ready.items()
    }, "exported")
    failed.update(review)
    final.extend(review)
    notes = {
        rid: {t: uncastable_note(policy.table(t).subject)
              for t in tables if not exported[t].get("subject_matchable", True)}
        for rid, (_, exported) in ready.items()
    }
    uris = exporting.finish_documents(
        policy.exports, run_id, [(rid, ready[rid][0].subject_id) for rid in sorted(outcomes)], tables,
        exported_at=now, notes=notes,
    ) if outcomes else {}
    for rid, outcome in outcomes.items():
        exported = ready[rid][1]
        rows = {t: exported[t].get("rows", 0) for t in tables}
        done.append({"request_id": rid, "export_uri": uris[rid],
                     "result": {"kind": "export", "export_uri": uris[rid], "tables": rows, "notes": notes[rid],
                                "outcome": outcome}})
    if done:
        control.complete(policy, run_id, done)
    # every export of the run is now done or failed (a failed one is scanned again by its next attempt):
    # no part file of the run outlives this step
    exporting.remove_run_parts(policy.exports, run_id)
    if failed:
        control.fail(policy, run_id, failed, final=final)
    released = _hold_back_erasures(policy, run_id)
    log.info("run %s: %d export document(s) written, %d failed, %d erasure(s) wait for an export",
             run_id, len(done), len(failed), released)
    return {"documents": len(done), "failed": len(failed), "erasures_waiting": released}


def _hold_back_erasures(policy: Policy, run_id: str) -> int:
    """With export_before_erase, an erasure whose subject has an unfinished export goes back to pending."""
    if not policy.export_before_erase:
        return 0
    erasures = _batch(policy, run_id, "erase")
    if not erasures:
        return 0
    blocking = {
        r.subject_id for r in control.list_requests(policy) if r.kind == "export" and control.is_open(r, policy)
    }
    waiting = [r.request_id for r in erasures if r.subject_id in blocking]
    if waiting:
        control.release(policy, run_id, waiting, "waiting for an unfinished export of the same subject")
    return len(waiting)


# --- erase ------------------------------------------------------------------------------------------------


def _erase_events(policy: Policy, request_ids: Iterable[str], table: str) -> dict[str, dict[str, Any]]:
    """request id -> details of its latest erase (or retain) event in this table."""
    out: dict[str, dict[str, Any]] = {}
    for rid, events in audit.events_by_request(policy, request_ids).items():
        for e in events:
            if e["table_name"] == table and e["event"] in ("table_erased", "table_retained"):
                out[rid] = e["details"]
    return out


def _rows_now(
    table: TableSpec, info: access.TableInfo, reqs: Sequence[control.Request]
) -> tuple[erasure.SubjectKeys, dict[Any, int], dict[str, int]]:
    """The subjects' rows in the table now, by one projected, pushed-down read of the subject column:
    (keys, rows per key, rows per request)."""
    keys = erasure.subject_keys([(r.request_id, r.subject_id) for r in reqs], info.schema.field(table.subject).type)
    per_key: dict[Any, int] = defaultdict(int)
    for batch in access.scan(table.uri, [table.subject], where_in=(table.subject, keys.keys), info=info):
        for value in batch.column(0).to_pylist():
            per_key[value] += 1
    return keys, per_key, {r.request_id: per_key.get(keys.by_request.get(r.request_id), 0) for r in reqs}


def _retained_rows(table: TableSpec, reqs: Sequence[control.Request]) -> dict[str, int | None]:
    """Rows each request's subject has in a retained table; None when the table cannot be read."""
    from dsr.errors import TableError

    try:
        return dict(_rows_now(table, access.table_info(table.uri), reqs)[2])
    except TableError:
        return {r.request_id: None for r in reqs}


def _commit_effect(uri: str, result: CommitResult) -> dict[str, Any]:
    """What the commit did to files, read from the log by the access layer (not from the engine's metrics)."""
    if not result.committed:
        return {"files_removed": 0, "files_added": 0, "files_rewritten": 0, "dv_marked": 0, "cdc_files": 0}
    c = access.commit_actions(uri, result.version_after)
    return {"files_removed": len(c.removes), "files_added": c.files_added, "files_rewritten": c.files_rewritten,
            "dv_marked": c.dv_marked, "cdc_files": c.cdc_files}


def _recover_from_history(
    policy: Policy, engine: Engine, run_id: str, table: TableSpec, pending: Sequence[str]
) -> list[str]:
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
                "table_erased", request_id=rid, run_id=run_id, table_name=table.name,
                details={
                    "strategy": table.erase, "rows": int(rows.get(rid, 0)),
                    "rows_matched_total": int(commit.get("dsr.rows_matched") or 0),
                    "rows_deleted": result.rows_deleted, "rows_updated": result.rows_updated,
                    **_commit_effect(table.uri, result),
                    "version_before": version - 1, "version_after": version,
                    "subject_matchable": True, "engine": engine.name,
                    "recovered_from_commit": True, "commit_run_id": commit.get("dsr.run_id"),
                },
            ))
        want -= hit
    if recovered:
        audit.append(policy, recovered)
    return sorted(set(pending) - want)


def erase_table(policy: Policy, engine: Engine, run_id: str, table_name: str) -> dict[str, Any]:
    """ONE Delta commit erasing (or anonymising) every erase request of the run in one table.

    The table passes the protocol gate first (refused: the requests fail with the reason, nothing written).
    Then one read of the subjects' rows decides: a request whose rows are present is erased, whatever the
    audit log says (rows appended since an earlier erase are erased again); a request already erased with no
    rows left is done.
    """
    control.renew_lease(policy, run_id)
    table = policy.table(table_name)
    reqs = _batch(policy, run_id, "erase")
    if not reqs:
        return {"table": table_name, "requests": 0}
    done = _erase_events(policy, [r.request_id for r in reqs], table.name)
    if table.erase is Strategy.RETAIN:
        todo = [r for r in reqs if r.request_id not in done]
        retained = _retained_rows(table, todo)
        audit.append(policy, [
            audit.AuditEvent("table_retained", request_id=r.request_id, run_id=run_id, table_name=table.name,
                             details={"strategy": Strategy.RETAIN.value, "reason": table.reason,
                                      "rows": retained.get(r.request_id)})
            for r in todo
        ])
        return {"table": table_name, "requests": len(todo), "strategy": Strategy.RETAIN.value}

    verdict = gate.check_table(table, engine.support)
    if not verdict.ok:
        _refuse(policy, run_id, table, [r.request_id for r in reqs], "erase", verdict.reason, final=True)
        return {"table": table_name, "requests": len(reqs), "refused": verdict.reason}

    info = verdict.info
    assert info is not None
    _, per_key, rows_now = _rows_now(table, info, reqs)
    todo = [r for r in reqs if r.request_id not in done or rows_now[r.request_id] > 0]
    if not todo:
        return {"table": table_name, "requests": 0, "already_done": len(reqs)}
    lost = [r.request_id for r in todo if r.request_id not in done and rows_now[r.request_id] == 0]
    recovered = _recover_from_history(policy, engine, run_id, table, lost) if lost else []
    todo = [r for r in todo if r.request_id not in recovered]
    if not todo:
        return {"table": table_name, "requests": 0, "recovered": len(recovered)}

    todo_ids = {r.request_id for r in todo}
    ctype = info.schema.field(table.subject).type
    todo_keys = erasure.subject_keys([(r.request_id, r.subject_id) for r in todo], ctype)
    matched = sum(per_key.get(v, 0) for v in set(todo_keys.by_request.values()))
    request_ids = sorted(todo_ids)
    rows_by_request = {rid: rows_now[rid] for rid in request_ids}
    metadata = {
        "dsr.run_id": run_id, "dsr.table": table.name, "dsr.request_ids": ",".join(request_ids),
        "dsr.rows_by_request": json.dumps(rows_by_request, sort_keys=True), "dsr.rows_matched": str(matched),
    }
    try:
        if len(todo_keys.keys) and matched:
            key = policy.pseudonym_key() if policy.needs_key and table.erase is Strategy.ANONYMISE else None
            source = erasure.build_source(table, info.schema, todo_keys, key)
            anonymise = table.erase is Strategy.ANONYMISE
            plan = ErasePlan(
                uri=table.uri, subject=table.subject, operation=str(table.erase.operation),
                updates=erasure.build_updates(table, info.schema, engine.dialect) if anonymise else {},
                metadata=metadata,
            )
            result = engine.erase(plan, source)
        else:
            result = CommitResult(version_before=info.version, version_after=info.version)
    except Exception as exc:
        reason = scrub(f"erase failed on engine {engine.name}: {access.error_line(exc)}", [r.subject_id for r in reqs])
        _refuse(policy, run_id, table, request_ids, "erase", reason, final=False)
        raise
    effect = _commit_effect(table.uri, result)
    audit.append(policy, [
        audit.AuditEvent(
            "table_erased", request_id=r.request_id, run_id=run_id, table_name=table.name,
            details={
                "strategy": table.erase, "rows": rows_by_request[r.request_id], "rows_matched_total": matched,
                "rows_deleted": result.rows_deleted, "rows_updated": result.rows_updated, **effect,
                "version_before": result.version_before, "version_after": result.version_after,
                "subject_matchable": r.request_id not in todo_keys.uncastable, "engine": engine.name,
                "repeat": r.request_id in done,
            },
        )
        for r in todo
    ])
    log.info("run %s: table %s %s: %d row(s) for %d request(s), files rewritten %d, added %d, "
             "deletion vectors %d, version %d -> %d", run_id, table.name, table.erase, matched, len(todo),
             effect["files_rewritten"], effect["files_added"], effect["dv_marked"],
             result.version_before, result.version_after)
    return {"table": table_name, "requests": len(todo), "strategy": table.erase, "rows": matched,
            "files_rewritten": effect["files_rewritten"], "files_added": effect["files_added"],
            "dv_marked": effect["dv_marked"], "version_after": result.version_after}


# --- verify -----------------------------------------------------------------------------------------------


def verify_table(policy: Policy, engine: Engine, run_id: str, table_name: str) -> dict[str, Any]:
    """Verify one table for the run's erasures, reading it back through the access layer (never through the
    engine that wrote); record a ``verified`` event per request.

    Raises VerificationError when a suite fails (after recording it).
    """
    table = policy.table(table_name)
    if table.erase is Strategy.RETAIN:  # nothing changed, nothing to prove; the receipt shows the reason
        return {"table": table_name, "requests": 0, "strategy": Strategy.RETAIN.value, "success": True}
    control.renew_lease(policy, run_id)
    reqs = _batch(policy, run_id, "erase")
    by_request = audit.events_by_request(policy, [r.request_id for r in reqs])
    commits: dict[tuple[int, int], dict[str, Any]] = {}
    verify: list[control.Request] = []
    for r in reqs:
        erased = [e for e in by_request[r.request_id] if e["table_name"] == table.name and e["event"] == "table_erased"]
        if not erased or table.name in _table_failures(by_request[r.request_id], run_id):
            continue
        verify.append(r)
        for e in erased:
            d = e["details"]
            if e["run_id"] == run_id and d.get("strategy") in (Strategy.DELETE, Strategy.ANONYMISE) and \
                    d["version_after"] != d["version_before"]:
                commits[(d["version_before"], d["version_after"])] = d
    if not verify:
        return {"table": table_name, "requests": 0, "success": True}
    check = check_table(policy, table, [r.subject_id for r in verify], [commits[k] for k in sorted(commits)])
    audit.append(policy, [
        audit.AuditEvent("verified", request_id=r.request_id, run_id=run_id, table_name=table.name,
                         details=check.as_dict())
        for r in verify
    ])
    log.info("run %s: table %s verified: %s", run_id, table.name, "OK" if check.success else "FAILED")
    if not check.success:
        failed = ", ".join(_failed_suites(check.suites))
        raise VerificationError(f"verification failed on table {table.name!r}: {failed}")
    return {"table": table_name, "requests": len(verify), "success": True}


def _failed_suites(suites: Sequence[dict[str, Any]]) -> list[str]:
    """Failed suites with their failed expectations, e.g. ``dsr_reconcile[v3->v4] (..._between[keyed_after])``."""
    out = []
    for s in suites:
        if not s["success"]:
            what = ", ".join(s.get("failed_expectations") or [])
            out.append(f"{s['suite']} ({what})" if what else s["suite"])
    return out


# --- complete ---------------------------------------------------------------------------------------------


def _outcomes(
    policy: Policy, found: dict[str, tuple[str, int | None]], done_word: str
) -> tuple[dict[str, str], dict[str, str]]:
    """``found``: request id -> (subject id, rows of the subject found in all tables, None if unknown).

    Returns (request id -> outcome, request id -> reason to fail for review). A subject that matched no row
    anywhere gives "no data found" — unless rows match it after Unicode normalisation, case folding or
    trimming: then the request fails for a person to review (counts only, never values).
    """
    empty = sorted({sid for sid, n in found.values() if n == 0})
    near = nearmatch.near_matches(policy, empty) if empty else {}
    outcomes: dict[str, str] = {}
    review: dict[str, str] = {}
    for rid, (sid, n) in found.items():
        if n == 0 and sid in near:
            review[rid] = nearmatch.review_reason(near[sid])
        else:
            outcomes[rid] = "no data found" if n == 0 else done_word
    return outcomes, review


def _rows_found(result: dict[str, Any]) -> int | None:
    """Rows of the subject in all tables of an erasure result (erased, anonymised or retained); None when a
    table could not say."""
    rows = [t.get("rows") for t in result["tables"].values()]
    return None if any(n is None for n in rows) else sum(int(n) for n in rows)


def _request_result(
    policy: Policy, events: Sequence[dict[str, Any]], run_id: str | None = None
) -> tuple[dict[str, Any], str | None, bool]:
    """The receipt-ready result of an erasure (from its audit events), what is missing, and whether that
    can never be fixed by retrying (a refused table)."""
    erased: dict[str, list[dict[str, Any]]] = defaultdict(list)
    verified: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["event"] in ("table_erased", "table_retained"):
            erased[e["table_name"]].append(e["details"])
        elif e["event"] == "verified":
            verified[e["table_name"]] = e["details"]
    failures = _table_failures(events, run_id)
    tables: dict[str, Any] = {}
    problems: list[str] = []
    final = False
    for t in policy.tables:
        failure = failures.get(t.name)
        if failure is not None:
            problems.append(failure["reason"])
            final = final or bool(failure.get("final"))
            continue
        ds = erased.get(t.name)
        if not ds:
            problems.append(f"table {t.name!r} not erased")
            continue
        d = ds[-1]
        v = verified.get(t.name)
        committed = [x for x in ds if x.get("version_after") != x.get("version_before")]
        entry = {
            "strategy": t.erase, "rows": sum(int(x.get("rows", 0)) for x in ds),
            "version_before": (committed[0] if committed else d).get("version_before"),
            "version_after": (committed[-1] if committed else d).get("version_after"),
            "commits": len(committed),
            "files_removed": sum(int(x.get("files_removed") or 0) for x in ds),
            "files_added": sum(int(x.get("files_added") or 0) for x in ds),
            "files_rewritten": sum(int(x.get("files_rewritten") or 0) for x in ds),
            "dv_marked": sum(int(x.get("dv_marked") or 0) for x in ds),
            "ge_success": None if v is None else v["success"],
        }
        if t.erase is Strategy.RETAIN:
            entry["reason"] = t.reason
        if not d.get("subject_matchable", True):
            entry["note"] = uncastable_note(t.subject)
        tables[t.name] = entry
        if t.erase is not Strategy.RETAIN:
            if v is None:
                problems.append(f"table {t.name!r} not verified")
            elif not v["success"]:
                problems.append(f"verification failed on table {t.name!r}: "
                                f"{', '.join(_failed_suites(v.get('suites', [])))}")
    return {"kind": "erase", "tables": tables}, ("; ".join(problems) if problems else None), final


def complete_batch(policy: Policy, run_id: str, errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Complete every erasure of the run that is erased and verified everywhere; fail the rest (a refused
    table fails its requests for good: retrying cannot help until the table or the engine changes)."""
    reqs = _batch(policy, run_id)
    done: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    final: list[str] = []
    events = audit.events_by_request(policy, [r.request_id for r in reqs])
    found: dict[str, tuple[str, int | None]] = {}
    for r in reqs:
        if r.kind == "export":
            failed[r.request_id] = "export not finished in this run"
            continue
        result, problem, is_final = _request_result(policy, events[r.request_id], run_id)
        if problem is None:
            done.append({"request_id": r.request_id, "result": result})
            found[r.request_id] = (r.subject_id, _rows_found(result))
        else:
            extra = (errors or {}).get(r.request_id)
            failed[r.request_id] = scrub(problem + (f" ({extra})" if extra else ""), [r.subject_id])
            if is_final:
                final.append(r.request_id)
    outcomes, review = _outcomes(policy, found, "erased")
    failed.update(review)
    final.extend(review)
    done = [{**d, "result": {**d["result"], "outcome": outcomes[d["request_id"]]}}
            for d in done if d["request_id"] in outcomes]
    if done:
        control.complete(policy, run_id, done)
    if failed:
        control.fail(policy, run_id, failed, final=final)
    for uri in (policy.requests_uri, policy.audit_uri):
        deltautil.compact_small_files(uri)
    # the whole batch: exports completed earlier in the run count too
    mine = [r for r in control.list_requests(policy) if r.run_id == run_id]
    n_completed = sum(1 for r in mine if r.status == "completed")
    n_failed = sum(1 for r in mine if r.status == "failed")
    log.info("run %s: %d request(s) completed, %d failed", run_id, n_completed, n_failed)
    return {"run_id": run_id, "completed": n_completed, "failed": n_failed, "exit_code": 1 if n_failed else 0}


# --- the whole run ----------------------------------------------------------------------------------------


@dataclass
class RunReport:
    run_id: str
    engine: str
    claimed: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.errors or self.summary.get("exit_code", 0) else 0

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "engine": self.engine, "claimed": self.claimed, "steps": self.steps,
                "errors": self.errors, "summary": self.summary, "exit_code": self.exit_code}


def run(policy: Policy, engine: Engine, *, run_id: str | None = None) -> RunReport:
    """Process every claimable request once."""
    claimed = claim_batch(policy, run_id)
    rid = claimed["run_id"]
    report = RunReport(run_id=rid, engine=engine.name, claimed=claimed)
    if not claimed["requests"]:
        report.summary = {"run_id": rid, "completed": 0, "failed": 0, "exit_code": 0}
        return report
    subjects = [r.subject_id for r in _batch(policy, rid)]

    def step(name: str, fn: Any, *args: Any) -> None:
        try:
            out = fn(*args)
            report.steps.append({"step": name, **out})
            if out.get("refused"):
                report.errors.append(f"{name}: {out['refused']}")
        except Exception as exc:  # recorded, scrubbed, and the run goes on to complete what it can
            msg = scrub(f"{name}: {access.error_line(exc)}", subjects)
            log.error("run %s: %s", rid, msg)
            report.errors.append(msg)

    for t in claimed["export_tables"]:
        step(f"export {t}", export_table, policy, engine, rid, t)
    step("finish exports", finish_exports, policy, rid)
    for t in claimed["erase_tables"]:
        step(f"erase {t}", erase_table, policy, engine, rid, t)
    for t in claimed["erase_tables"]:
        step(f"verify {t}", verify_table, policy, engine, rid, t)
    report.summary = complete_batch(policy, rid)
    return report
