"""``dsr requests``: the requests table, with each completed erasure's purge state and, for an erasure cooling
down after an export, when it will proceed."""

from __future__ import annotations

import datetime as dt
import json

from dsr.core import control
from dsr.core.policy import Policy
from dsr.steps.claim import cooling_erasures
from dsr.steps.purge import purge_states

__all__ = ["print_requests"]


def _pending_sweeps(policy: Policy) -> None:
    from dsr.steps.sweep_pending import pending_tables

    for name, n in pending_tables(policy).items():
        print(f"table {name}: pending its first sweep ({n} past erasure(s) not applied yet; dsr sweep applies "
              "them)")


def print_requests(policy: Policy, *, status: str | None, as_json: bool) -> int:
    """The requests table (or JSON), with each completed erasure's purge: done, or due (overdue when past the
    request's own due date)."""
    now = dt.datetime.now(dt.UTC)
    rows = control.list_requests(policy, status=status)
    purges = purge_states(policy, rows, now)
    cooling = cooling_erasures(policy, now) if any(r.kind == "erase" for r in rows) else {}
    if as_json:
        print(json.dumps([{**r.public(now), "purge": purges.get(r.request_id),
                           "proceeds_at": cooling[r.request_id].isoformat() if r.request_id in cooling else None}
                          for r in rows], indent=2))
        return 0
    if not rows:
        print("no requests" + (f" with status {status}" if status else ""))
        return 0
    _pending_sweeps(policy)
    print(f"{'REQUEST':22} {'KIND':6} {'STATUS':9} {'DUE':10} {'TRIES':>5}  TICKET")
    for r in rows:
        flag = "  OVERDUE" if r.overdue(now) else ""
        print(f"{r.request_id:22} {r.kind:6} {r.status:9} {r.due_at:%Y-%m-%d} {r.attempts:>5}  {r.ticket or '-'}{flag}")
        outcome = r.result_json().get("outcome") if r.status == "completed" else None
        if r.request_id in cooling:
            print(f"{'':22} cooling down after an export: proceeds {cooling[r.request_id]:%Y-%m-%d %H:%M} UTC "
                  f"(erase_cooldown_days {policy.erase_cooldown_days})")
        if outcome == "no data found":
            print(f"{'':22} outcome: no data found (the subject id matched no row in any table)")
        purge = purges.get(r.request_id)
        if purge:
            late = "  PURGE OVERDUE" if purge.get("overdue") else ""
            scanned = f", residue {purge['residue']}" if purge.get("residue") is not None else ""
            print(f"{'':22} {'purged' if purge['state'] == 'purged' else 'purge due'} {purge['at'][:16]} UTC"
                  f"{scanned}{late}")
        if r.status == "failed" and r.error:
            for i, part in enumerate(r.error.replace("\n", " ").split("; ")):
                print(f"{'':22} {'error: ' if i == 0 else '       '}{part}")
    return 0
