"""``dsr status``: the backlog on one screen (or ``--json``, or ``--prometheus``); exit 1 when anything is
overdue or failed for good, so cron or any monitor can alert on it."""

from __future__ import annotations

import datetime as dt
import json

from dsr.core.policy import Policy
from dsr.steps import status as backlog

__all__ = ["cli_status", "status_lines"]


def _age(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


def _when(at: dt.datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at is not None else "never"


def status_lines(s: backlog.Status) -> list[str]:
    """The status in words (request ids, kinds, tables and counts only)."""
    out = ["requests   " + "  ".join(
        f"{kind}: " + ", ".join(f"{n} {st}" for (k, st), n in sorted(s.counts.items()) if k == kind)
        for kind in sorted({k for k, _ in s.counts}))]
    out.append("oldest open: " + (f"{s.oldest_open['request_id']} ({s.oldest_open['kind']}), "
                                  f"{_age(s.oldest_open['age_seconds'])} old" if s.oldest_open else "none"))
    out.append(f"overdue: {len(s.overdue)}   due within {s.soon_days} days: {len(s.due_soon)}   "
               f"failed: {len(s.failed)} ({len(s.failed_final)} with no attempt left)")
    for r in s.overdue:
        out.append(f"  OVERDUE  {r['request_id']} {r['kind']} {r['status']}, due {r['due_at'][:16]} UTC "
                   f"({-r['days_left']:g} day(s) late)")
    for r in s.due_soon:
        out.append(f"  due soon {r['request_id']} {r['kind']} {r['status']}, due {r['due_at'][:16]} UTC")
    for f in s.failed:
        why = " ".join((f["error"] or "no reason recorded").split())
        out.append(f"  FAILED   {f['request_id']} {f['kind']} after {f['attempts']} attempt(s)"
                   f"{' (final)' if f['final'] else ''}: {why[:300]}")
    out.append(f"purges due: {len(s.purges_due)}   overdue: {len(s.purges_overdue)}"
               + (f" ({', '.join(s.purges_overdue)})" if s.purges_overdue else ""))
    last = s.last_completed
    out.append("last completed: " + (f"{last['at'][:16]} UTC by run {last['run_id']}" if last else "never"))
    out.append(f"{'TABLE':20} {'STRATEGY':10} {'LAST ERASE':21} {'LAST SWEEP':21} FAILURES")
    for t in s.tables:
        flag = f"  FAILING in {len(t.failing_runs)} runs: {t.last_failure}" if t.failing_repeatedly else ""
        first = f"  pending first sweep ({t.pending_first_sweep})" if t.pending_first_sweep else ""
        out.append(f"{t.table:20} {t.strategy:10} {_when(t.last_erase_at):21} {_when(t.last_sweep_at):21} "
                   f"{t.failures_total}{flag}{first}")
    out.append("status: " + ("OK" if s.exit_code == 0 else "ALERT: something is overdue or failed for good"))
    return out


def cli_status(policy: Policy, *, as_json: bool, prometheus: bool) -> int:
    s = backlog.load(policy)
    if prometheus:
        from dsr.cli.prometheus import render

        print(render(s), end="")
    elif as_json:
        print(json.dumps(s.as_dict(), indent=2, default=str))
    else:
        print("\n".join(status_lines(s)))
    return s.exit_code
