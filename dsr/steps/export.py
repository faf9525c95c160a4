"""Steps 2 and 3, export: one scan per table for every export request of the run, then one document per request.

A table the reader cannot read is refused (its export requests fail at once, for good). A subject found in no
table completes as "no data found" unless a near match sends it to review (:mod:`dsr.steps.nearmatch`).
With ``export_before_erase``, erasures of subjects whose export is unfinished go back to pending.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from dsr import exports as exporting
from dsr.core import audit, control, gate
from dsr.core.cooldown import erase_waits
from dsr.core.policy import Policy, TableSpec
from dsr.core.subjects import uncastable_note
from dsr.delta.support import READ
from dsr.engines.base import Engine
from dsr.engines.reading import LOCAL, Reader
from dsr.plan import erasure
from dsr.plan import keys as keys_
from dsr.steps import nearmatch, notify
from dsr.steps.batch import Batch, table_failures
from dsr.verify import evidence

__all__ = ["export_table", "finish_exports"]

log = logging.getLogger("dsr.steps")


def export_table(policy: Policy, engine: Engine, run_id: str, table_name: str) -> dict[str, Any]:
    """ONE scan of one table for every export request of the run, where the engine reads (only the requested
    people's rows come back); rows go to the table's part files.

    A table the reader cannot read is refused: its export requests fail with the reason, for good.
    """
    batch = Batch.load(policy, run_id)
    batch.keep_lease()
    table = policy.table(table_name)
    reqs = batch.of("export")
    if not reqs or not table.export:
        return {"table": table_name, "requests": 0, "rows": 0}
    verdict = gate.check_table(table, engine.support, (READ,))
    if not verdict.ok:
        batch.refuse(table, [r.request_id for r in reqs], "export", verdict.reason, final=True)
        return {"table": table_name, "requests": len(reqs), "refused": verdict.reason}
    unmatched = gate.normalisation_refusal(policy, table, engine.reader, engine.name)
    if unmatched:
        batch.refuse(table, [r.request_id for r in reqs], "export", unmatched, final=True)
        return {"table": table_name, "requests": len(reqs), "refused": unmatched}
    info = verdict.info
    assert info is not None  # an accepted verdict always carries the metadata it judged
    schema = info.schema
    people = keys_.people_of(reqs)
    views = table.views()
    columns = [c for c in schema.names if c not in table.never_export]
    if exporting.FOUND_BY in columns:  # the row's own column would be lost under the member dsr adds
        clash = (f"table '{table.name}' has a column named {exporting.FOUND_BY}, the member every exported row "
                 "gets (schema_version 2): list it in never_export or rename it")
        batch.refuse(table, [r.request_id for r in reqs], "export", clash, final=True)
        return {"table": table_name, "requests": len(reqs), "refused": clash}
    found = [0] * len(views)
    by_column: list[dict[str, int]] = [defaultdict(int) for _ in views]  # rows found per column and request
    by_view: list[tuple[TableSpec, erasure.SubjectKeys, dict[Any, list[str]]]] = []
    for view in views:
        keys = keys_.keys_for(policy, view, people, info, engine.reader)
        by_key: dict[Any, list[str]] = defaultdict(list)
        for rid, held_keys in keys.by_request.items():
            for value in held_keys:
                by_key[value].append(rid)
        by_view.append((view, keys, by_key))
    with exporting.PartWriter(policy.exports, run_id, table.name, [r.request_id for r in reqs],
                              columns=[*columns, exporting.FOUND_BY]) as parts:
        for i, (view, keys, by_key) in enumerate(by_view):
            if not len(keys.keys):
                continue
            for rows in engine.reader.scan(table.uri, columns, where_in=(view.subject, keys.keys),
                                           version=info.version, info=info):
                found[i] += rows.num_rows
                values = exporting.json_columns(rows)  # a column at a time, not cell by cell
                held: list[list[Any]] = [rows.column(v.subject).to_pylist() for v, _, _ in by_view]
                for n, cells in enumerate(zip(*values, strict=True)):
                    for rid in by_key.get(held[i][n], ()):
                        by_column[i][rid] += 1
                        if any(held[j][n] in by_view[j][2] and rid in by_view[j][2][held[j][n]] for j in range(i)):
                            continue  # written already: found by an earlier subject column
                        hits = [{"column": v.subject, "kind": v.kind} for j, (v, _, bk) in enumerate(by_view)
                                if held[j][n] is not None and rid in bk.get(held[j][n], ())]
                        parts.write_json(rid, {**dict(zip(columns, cells, strict=True)), exporting.FOUND_BY: hits})
    if engine.reader.where != LOCAL.where:  # the writer's reader found these rows: the files must agree
        for i, (view, keys, _) in enumerate(by_view):
            why = evidence.export_disagreement(engine.reader, table.uri, view.subject, info, keys.keys, found[i])
            if why is not None:
                batch.refuse(table, [r.request_id for r in reqs], "export", f"table '{table.name}': {why}",
                             final=False)
                return {"table": table_name, "requests": len(reqs), "refused": why}
    uncastable = set.intersection(*(set(k.uncastable) for _, k, _ in by_view)) if by_view else set()
    per_column = len(table.subject_columns) > 1 or policy.typed
    batch.record([
        audit.AuditEvent(
            "table_exported", request_id=r.request_id, run_id=run_id, table_name=table.name,
            details={"rows": parts.rows[r.request_id], "version": info.version,
                     "subject_matchable": r.request_id not in uncastable,
                     "columns_excluded": list(table.never_export),
                     **({"columns": _column_rows(by_view, by_column, r.request_id)} if per_column else {})},
        )
        for r in reqs
    ])
    total = sum(parts.rows.values())
    log.info("run %s: exported table %s (%d rows for %d request(s))", run_id, table.name, total, len(reqs))
    return {"table": table_name, "requests": len(reqs), "rows": total, "version": info.version}


def _column_rows(by_view: Sequence[tuple[TableSpec, erasure.SubjectKeys, Any]],
                 by_column: Sequence[dict[str, int]], rid: str) -> dict[str, dict[str, Any]]:
    """Per subject column: its kind, the request's rows found by it (a row found by two columns counts under
    both, and is exported once) and whether any of the person's identifiers can be cast to its type."""
    return {view.subject: {"kind": view.kind, "rows": by_column[i].get(rid, 0),
                           "matchable": rid not in keys.uncastable}
            for i, (view, keys, _) in enumerate(by_view)}


def _exported_tables(events: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["table_name"]: e["details"] for e in events if e["event"] == "table_exported"}


def finish_exports(policy: Policy, run_id: str, reader: Reader = LOCAL) -> dict[str, Any]:
    """Write one document per export request and complete it; hold back erasures that must wait.

    Sorting requests into refused, incomplete, for review and ready, then writing: one pass, kept together.
    """
    batch = Batch.load(policy, run_id)
    batch.keep_lease()
    reqs = batch.of("export")
    tables = [t.name for t in policy.tables if t.export]
    done: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    now = dt.datetime.now(dt.UTC)
    events = batch.events()
    final: list[str] = []
    ready: dict[str, tuple[control.Request, dict[str, dict[str, Any]]]] = {}
    for r in reqs:
        failures = table_failures(events[r.request_id], run_id)
        refused = {t: d for t, d in failures.items() if d.get("final")}
        if refused:
            failed[r.request_id] = "export impossible: " + "; ".join(d["reason"] for d in refused.values())
            final.append(r.request_id)
            continue
        exported = _exported_tables(events[r.request_id])
        missing = [t for t in tables if t not in exported]
        if missing:
            why = "; ".join(str(failures[t]["reason"]) for t in missing if t in failures)
            failed[r.request_id] = f"export incomplete: table(s) not scanned: {', '.join(missing)}" + (
                f" ({why})" if why else "")
            continue
        ready[r.request_id] = (r, exported)
    outcomes, review = nearmatch.outcomes(policy, {
        rid: (r.subject_id, sum(int(exported[t].get("rows", 0)) for t in tables))
        for rid, (r, exported) in ready.items()
    }, "exported", reader)
    failed.update(review)
    final.extend(review)
    notes = {
        rid: {t: uncastable_note(policy.table(t).subject)
              for t in tables if not exported[t].get("subject_matchable", True)}
        for rid, (_, exported) in ready.items()
    }
    delivery = policy.delivery
    options = {rid: _package_options(events[rid], delivery.recipient_key) for rid in outcomes}
    people = [exporting.Person(rid, ready[rid][0].subject_id, ready[rid][0].ids) for rid in sorted(outcomes)]
    uris = exporting.finish_documents(
        policy.exports, run_id, people, tables,
        exported_at=now, notes=notes, ttl_days=policy.export_ttl_days,
        options=options,
        stored=exporting.Stored(delivery.sse, delivery.kms_key_id),
    ) if outcomes else {}
    for rid, outcome in outcomes.items():
        exported = ready[rid][1]
        rows = {t: exported[t].get("rows", 0) for t in tables}
        done.append({"request_id": rid, "export_uri": uris[rid],
                     "result": {"kind": "export", "export_uri": uris[rid], "tables": rows, "notes": notes[rid],
                                "outcome": outcome, "format": options[rid].format,
                                "sealed": options[rid].recipient_key is not None,
                                "expires_at": (now + dt.timedelta(days=policy.export_ttl_days)).isoformat()}})
    if done:
        control.complete(policy, run_id, done)
        notify.packages_ready(policy, [d["request_id"] for d in done])
    # every export of the run is now done or failed (a failed one is scanned again by its next attempt):
    # no part file of the run outlives this step
    exporting.remove_run_parts(policy.exports, run_id)
    if failed:
        control.fail(policy, run_id, failed, final=final)
    released = _hold_back_erasures(policy, batch, now)
    log.info("run %s: %d export document(s) written, %d failed, %d erasure(s) wait for an export",
             run_id, len(done), len(failed), released)
    return {"documents": len(done), "failed": len(failed), "erasures_waiting": released}


def _package_options(events: Sequence[dict[str, Any]], policy_key: str | None) -> exporting.PackageOptions:
    """A request's format and recipient key, as filed (its ``received`` event); the policy's key otherwise."""
    filed = next((e["details"] for e in events if e["event"] == "received"), None) or {}
    return exporting.PackageOptions(format=str(filed.get("format") or "json"),
                                    recipient_key=filed.get("recipient_key") or policy_key)


def _hold_back_erasures(policy: Policy, batch: Batch, now: dt.datetime) -> int:
    """With export_before_erase, an erasure whose subject has an unfinished export goes back to pending; so does
    one whose subject's export this run has just completed, for its cool-down (``erase_cooldown_days``; the
    claim keeps later runs from taking it before its time)."""
    erasures = batch.of("erase")
    if not erasures or not (policy.export_before_erase or policy.erase_cooldown_days):
        return 0
    # an open export of the same person, whichever of their identifiers it was filed with
    blocking = {i for r in control.list_open(policy) if r.kind == "export" for i in r.ids
                } if policy.export_before_erase else set()
    # this run's erasures against the exports it has just completed (their resolved sets)
    cooling = erase_waits(control.list_requests(policy, run_id=batch.run_id), policy.erase_cooldown_days, now)
    waiting = [r.request_id for r in erasures if blocking & set(r.ids)]
    if waiting:
        control.release(policy, batch.run_id, waiting, "waiting for an unfinished export of the same subject")
    later = [r.request_id for r in erasures if r.request_id in cooling and r.request_id not in waiting]
    if later:
        control.release(policy, batch.run_id, later, "cooling down after an export of the same subject "
                                                     f"(erase_cooldown_days {policy.erase_cooldown_days})")
    return len(waiting) + len(later)
