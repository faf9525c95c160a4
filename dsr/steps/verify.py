"""Step 5, verify: each erased table read back where the engine reads, checked against the log and the files'
own account, and proved with the GE suites of :mod:`dsr.verify.checks`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from dsr.core import audit, control
from dsr.core.masks import Strategy
from dsr.core.policy import Policy
from dsr.engines.base import Engine
from dsr.errors import VerificationError
from dsr.steps.batch import Batch, table_failures
from dsr.verify.checks import check_table

__all__ = ["failed_suites", "verify_table"]

log = logging.getLogger("dsr.steps")


def verify_table(policy: Policy, engine: Engine, run_id: str, table_name: str) -> dict[str, Any]:
    """Verify one table for the run's erasures, reading it back with the engine's reader, checked against
    evidence that reader did not produce (:mod:`dsr.verify.checks`); record a ``verified`` event per request.

    Raises VerificationError when a suite fails (after recording it).
    """
    table = policy.table(table_name)
    if table.erase is Strategy.RETAIN:  # nothing changed, nothing to prove; the receipt shows the reason
        return {"table": table_name, "requests": 0, "strategy": Strategy.RETAIN.value, "success": True}
    batch = Batch.load(policy, run_id)
    batch.keep_lease()
    reqs = batch.of("erase")
    by_request = batch.events()
    commits: dict[tuple[int, int], dict[str, Any]] = {}
    verify: list[control.Request] = []
    for r in reqs:
        erased = [e for e in by_request[r.request_id] if e["table_name"] == table.name and e["event"] == "table_erased"]
        if not erased or table.name in table_failures(by_request[r.request_id], run_id):
            continue
        verify.append(r)
        for e in erased:
            d = e["details"]
            if e["run_id"] == run_id and d.get("strategy") in (Strategy.DELETE, Strategy.ANONYMISE) and \
                    d["version_after"] != d["version_before"]:
                commits[(d["version_before"], d["version_after"])] = d
    if not verify:
        return {"table": table_name, "requests": 0, "success": True}
    check = check_table(policy, table, [(r.request_id, r.ids) for r in verify],
                        [commits[k] for k in sorted(commits)], engine.reader)
    proof = check.as_dict()  # the same for every request: one object, encoded once
    batch.record([
        audit.AuditEvent("verified", request_id=r.request_id, run_id=run_id, table_name=table.name, details=proof)
        for r in verify
    ])
    log.info("run %s: table %s verified: %s", run_id, table.name, "OK" if check.success else "FAILED")
    if not check.success:
        failed = ", ".join(failed_suites(check.suites))
        raise VerificationError(f"verification failed on table {table.name!r}: {failed}")
    return {"table": table_name, "requests": len(verify), "success": True}


def failed_suites(suites: Sequence[dict[str, Any]]) -> list[str]:
    """Failed suites with their failed expectations, e.g. ``dsr_reconcile[v3->v4] (..._between[keyed_after])``."""
    out = []
    for s in suites:
        if not s["success"]:
            what = ", ".join(s.get("failed_expectations") or [])
            out.append(f"{s['suite']} ({what})" if what else s["suite"])
    return out
