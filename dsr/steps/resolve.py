"""Step 2, resolve: each claimed request's identifiers, through the link tables, to every identifier of the same
person, frozen with the request.

A request resolved once keeps its set: a retry (a failed run, a lease that ran out) erases or exports exactly
that set. The set is personal data: it lives in the control table's ``identities`` until purge minimises it, never
in the audit log (which records kinds, counts, depth and link tables read). Above ``identity_max_ids`` the
request fails for review (final: it is not retried), naming kinds and counts only, before anything is exported or
erased. A link table that cannot be read fails the requests that needed it (retried): resolution is never partial.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from dsr.core import audit, control
from dsr.core.identifiers import identities_json
from dsr.core.policy import Policy
from dsr.core.policy_model import IdentityLink
from dsr.engines.reading import LOCAL, Reader
from dsr.errors import TableError
from dsr.plan.identity import expand, fan_out_reason
from dsr.steps.batch import Batch

__all__ = ["resolve_identities"]

log = logging.getLogger("dsr.steps")


def resolve_identities(policy: Policy, run_id: str, reader: Reader = LOCAL) -> dict[str, Any]:
    """Resolve the run's requests not resolved yet (a policy without ``identifiers`` has nothing to resolve)."""
    if not policy.typed:
        return {"resolved": 0}
    batch = Batch.load(policy, run_id)
    todo = [r for r in batch.requests if r.resolved is None]
    if not todo:
        return {"resolved": 0}
    batch.keep_lease()
    steps = {k.name: k.normalise for k in policy.identifiers}
    for name, st in sorted(steps.items()):
        why = reader.reproduces(st) if st and any(k == name for link in policy.identity for _, k in link.columns) \
            else None
        if why:  # the link tables would be matched otherwise than the requests: refuse, for good
            reason = f"identity resolution: identifier kind {name!r}: {why}"
            control.fail(policy, run_id, {r.request_id: reason for r in todo}, final=[r.request_id for r in todo])
            log.error("run %s: %s", run_id, reason)
            return {"resolved": 0, "failed": len(todo)}

    def lookup(link: IdentityLink, wanted: Mapping[str, Sequence[str]]) -> Any:
        return reader.linked(link.uri, {c: steps[k] for c, k in link.columns}, wanted)

    try:
        found = expand({r.request_id: r.given() for r in todo}, policy.identity, lookup,
                       max_ids=policy.identity_max_ids, max_depth=policy.identity_max_depth)
    except TableError as exc:
        why = f"identity resolution: a link table cannot be read ({exc})"
        control.fail(policy, run_id, {r.request_id: why for r in todo})
        log.error("run %s: %s", run_id, why)
        return {"resolved": 0, "failed": len(todo)}
    over = {rid: fan_out_reason(r, policy.identity_max_ids) for rid, r in found.items() if r.over_cap}
    if over:
        control.fail(policy, run_id, over, final=over)
    frozen = {r.request_id: identities_json(r.given(), found[r.request_id].ids) for r in todo
              if r.request_id not in over}
    stored = control.set_identities(policy, run_id, frozen)
    audit.append(policy, [
        audit.AuditEvent("identity_resolved", request_id=rid, run_id=run_id, details={
            "kinds": found[rid].kinds(), "identifiers": len(found[rid].ids), "depth": found[rid].depth,
            "links": found[rid].links, "over_cap": rid in over, "max_ids": policy.identity_max_ids,
            "max_depth": policy.identity_max_depth})
        for rid in sorted(set(stored) | set(over))
    ])
    log.info("run %s: %d request(s) resolved, %d failed for review (identity_max_ids)", run_id, len(stored),
             len(over))
    return {"resolved": len(stored), "for_review": len(over)}
