"""Step 1, claim: the run takes every claimable request as one batch (after the run-wide checks)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from dsr import exports as exporting
from dsr.core import audit_guard, control, coverage, lease
from dsr.core.cooldown import erase_waits
from dsr.core.policy import Policy
from dsr.steps.batch import Batch

__all__ = ["claim_batch", "cooling_erasures"]

log = logging.getLogger("dsr.steps")


def claim_batch(policy: Policy, run_id: str | None = None, *, now: dt.datetime | None = None,
                in_process: bool = False) -> dict[str, Any]:
    """Claim every claimable request for this run. Returns run id, counts and the tables to process.

    Refuses (CoverageError, nothing claimed) while a personal table is neither covered nor exempt, (InputError)
    when the exports location is unusable, and (AuditChainError) when the audit log's chain is broken. Then
    removes the export parts of runs no longer alive (they hold personal data), with the live runs known from the
    claim's own read. The run holds a shared lease (:mod:`dsr.core.lease`) from here to its completion, so it
    never overlaps a purge. Erasures still in their cool-down after an export (``erase_cooldown_days``) are not
    claimed; ``now`` (default: the clock) decides.
    """
    coverage.require_covered(policy)
    exporting.check_location(policy.exports)
    run_id = control.check_run_id(run_id) if run_id else control.new_run_id()
    intact = audit_guard.require_intact_chain(policy)  # nothing is written on a broken audit chain
    # until the batch completes: a purge waits for it, or it for a purge. In one process (dsr run) the lease
    # goes with the process; a DAG's tasks are processes of their own, so its lease lasts until it runs out
    lease.hold(policy, run_id, "run", bound=in_process)
    live: set[str] = set()
    at = now or dt.datetime.now(dt.UTC)
    cooling = cooling_erasures(policy, at)
    control.claim(policy, run_id, live=live, now=at, skip=cooling)
    audit_guard.remember(policy, intact)
    exporting.remove_stale_parts(policy.exports, live | {run_id})
    batch = Batch.load(policy, run_id)  # includes what an earlier attempt of this same run claimed
    exports, erasures = batch.of("export"), batch.of("erase")
    log.info("run %s: %d export and %d erase request(s) claimed, %d erasure(s) cooling down", run_id, len(exports),
             len(erasures), len(cooling))
    if not batch.requests:
        lease.release(policy, run_id)  # nothing to do: no step (nor the completion) follows
    return {
        "run_id": run_id,
        "requests": len(batch.requests),
        "exports": len(exports),
        "erasures": len(erasures),
        "cooling_down": len(cooling),
        "export_tables": [t.name for t in policy.tables if t.export] if exports else [],
        "erase_tables": [t.name for t in policy.tables] if erasures else [],
    }


def cooling_erasures(policy: Policy, now: dt.datetime) -> dict[str, dt.datetime]:
    """Open erasure request id -> when it may proceed, for those still cooling down after an export."""
    if policy.erase_cooldown_days <= 0:
        return {}
    erasures = [r for r in control.list_open(policy) if r.kind == "erase"]
    if not erasures:
        return {}
    # the exports completed within the cool-down (a filter on the completion time), whichever identifier each
    # was filed with: erase_waits matches a person by any identifier in common
    since = now - dt.timedelta(days=policy.erase_cooldown_days)
    recent = control.request_ids(policy, status="completed", kind="export", updated_since=since)
    exports = control.list_requests(policy, ids=recent) if recent else []
    return erase_waits([*erasures, *exports], policy.erase_cooldown_days, now)
