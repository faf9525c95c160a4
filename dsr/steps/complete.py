"""Step 6, complete: every erasure of the run that was erased and verified in every table completes (with its
outcome: erased, or no data found); the rest fail with the reason — for good when a table was refused."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from dsr.core import audit_guard, control, lease
from dsr.core.masks import Strategy
from dsr.core.policy import Policy
from dsr.core.subjects import uncastable_note
from dsr.delta import tables as deltautil
from dsr.engines.reading import LOCAL, Reader
from dsr.errors import scrub
from dsr.steps import nearmatch
from dsr.steps.batch import Batch, table_failures
from dsr.steps.verify import failed_suites

__all__ = ["complete_batch"]

log = logging.getLogger("dsr.steps")


def _rows_found(result: dict[str, Any]) -> int | None:
    """Rows of the subject in all tables of an erasure result (erased, anonymised or retained); None when a
    table could not say."""
    rows = [t.get("rows") for t in result["tables"].values()]
    return None if any(n is None for n in rows) else sum(int(n) for n in rows)


def _request_result(
    policy: Policy, events: Sequence[dict[str, Any]], run_id: str | None = None
) -> tuple[dict[str, Any], str | None, bool]:
    """The receipt-ready result of an erasure (from its audit events), what is missing, and whether that
    can never be fixed by retrying (a refused table).

    One pass over a request's events, table by table; splitting it would read them twice.
    """
    erased: dict[str, list[dict[str, Any]]] = defaultdict(list)
    verified: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["event"] in ("table_erased", "table_retained"):
            erased[e["table_name"]].append(e["details"])
        elif e["event"] == "verified":
            verified[e["table_name"]] = e["details"]
    failures = table_failures(events, run_id)
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
                                f"{', '.join(failed_suites(v.get('suites', [])))}")
    return {"kind": "erase", "tables": tables}, ("; ".join(problems) if problems else None), final


def _suppress(policy: Policy, requests: list[control.Request]) -> None:
    """The completed erasures' suppression-list entries, now when the key is set; without it, the next
    ``dsr sweep`` or ``dsr purge`` (which need the key) adds them, from the ids still in the control table."""
    from dsr.core import suppression
    from dsr.errors import PolicyError

    try:
        key = policy.pseudonym_key()
    except PolicyError:
        if any(r.kind == "erase" and r.status == "completed" for r in requests):
            log.warning("no pseudonym key: the suppression-list entries of completed erasures wait for the next "
                        "dsr sweep or dsr purge")
        return
    suppression.ensure(policy, key, requests)


def complete_batch(policy: Policy, run_id: str, errors: dict[str, str] | None = None,
                   reader: Reader = LOCAL) -> dict[str, Any]:
    """Complete every erasure of the run that is erased and verified everywhere; fail the rest (a refused
    table fails its requests for good: retrying cannot help until the table or the engine changes). Gives back
    the run's lease at the end (:mod:`dsr.core.lease`)."""
    try:
        return _complete(policy, run_id, errors, reader)
    finally:
        lease.release(policy, run_id)


def _complete(policy: Policy, run_id: str, errors: dict[str, str] | None, reader: Reader) -> dict[str, Any]:
    batch = Batch.load(policy, run_id)
    reqs = batch.requests
    done: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    final: list[str] = []
    events = batch.events()
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
    outcomes, review = nearmatch.outcomes(policy, found, "erased", reader)
    failed.update(review)
    final.extend(review)
    done = [{**d, "result": {**d["result"], "outcome": outcomes[d["request_id"]]}}
            for d in done if d["request_id"] in outcomes]
    if done:
        control.complete(policy, run_id, done)
    if failed:
        control.fail(policy, run_id, failed, final=final)
    deltautil.compact_small_files(policy.requests_uri)
    audit_guard.compact(policy)  # carries the verified point over: the next run's check stays incremental
    # the whole batch: exports completed earlier in the run count too
    mine = control.list_requests(policy, run_id=run_id)
    _suppress(policy, mine)
    n_completed = sum(1 for r in mine if r.status == "completed")
    n_failed = sum(1 for r in mine if r.status == "failed")
    log.info("run %s: %d request(s) completed, %d failed", run_id, n_completed, n_failed)
    return {"run_id": run_id, "completed": n_completed, "failed": n_failed, "exit_code": 1 if n_failed else 0}
