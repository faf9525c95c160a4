"""The status as Prometheus text exposition format (for node-exporter's textfile collector): a pure transform.

Gauges and counters labelled with ``kind``, ``status`` and ``table`` only: never a subject id, nor a request id
(an unbounded label set). Times are Unix seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from dsr.steps.status import Status

__all__ = ["render"]

_Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str, samples: Iterable[_Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    sample = f"{name}_total" if kind == "counter" else name
    for labels, value in samples:
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        lines.append(f"{sample}{{{text}}} {_num(value)}" if text else f"{sample} {_num(value)}")
    return lines


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _ts(at: dt.datetime | None) -> float:
    return at.timestamp() if at is not None else 0.0


def render(s: Status) -> str:
    """The exposition text of one status (ends with a newline)."""
    kinds = sorted({k for k, _ in s.counts})
    per_kind = {k: 0 for k in kinds}

    def by_kind(rows: Iterable[dict[str, object]]) -> list[_Sample]:
        n = dict(per_kind)
        for r in rows:
            n[str(r["kind"])] = n.get(str(r["kind"]), 0) + 1
        return [({"kind": k}, float(v)) for k, v in sorted(n.items())]

    out: list[str] = []
    out += _family("dsr_requests", "gauge", "Requests in the control table by kind and status.",
                   [({"kind": k, "status": st}, float(n)) for (k, st), n in sorted(s.counts.items())])
    out += _family("dsr_requests_overdue", "gauge", "Requests not completed past their due date.", by_kind(s.overdue))
    out += _family("dsr_requests_due_soon", "gauge", f"Requests not completed due within {s.soon_days} days.",
                   by_kind(s.due_soon))
    out += _family("dsr_requests_failed_final", "gauge", "Failed requests with no attempt left.",
                   by_kind(s.failed_final))
    out += _family("dsr_oldest_open_request_age_seconds", "gauge", "Age of the oldest open request (0: none).",
                   [({}, float(s.oldest_open["age_seconds"]) if s.oldest_open else 0.0)])
    out += _family("dsr_purges_due", "gauge", "Completed erasures whose purge is due.",
                   [({}, float(len(s.purges_due)))])
    out += _family("dsr_purges_overdue", "gauge", "Completed erasures not purged by their request's due date.",
                   [({}, float(len(s.purges_overdue)))])
    out += _family("dsr_table_last_erase_timestamp_seconds", "gauge", "Last erase (or retain) in a table (0: never).",
                   [({"table": t.table}, _ts(t.last_erase_at)) for t in s.tables])
    out += _family("dsr_table_last_sweep_timestamp_seconds", "gauge", "Last sweep of a table (0: never).",
                   [({"table": t.table}, _ts(t.last_sweep_at)) for t in s.tables])
    out += _family("dsr_table_failures", "counter", "Failures of a table in the audit log.",
                   [({"table": t.table}, float(t.failures_total)) for t in s.tables])
    out += _family("dsr_table_failing_runs", "gauge", "Runs in a row that failed in a table since its last success.",
                   [({"table": t.table}, float(len(t.failing_runs))) for t in s.tables])
    out += _family("dsr_table_pending_first_sweep", "gauge", "Completed erasures not yet applied to a table.",
                   [({"table": t.table}, float(t.pending_first_sweep)) for t in s.tables])
    last = dt.datetime.fromisoformat(s.last_completed["at"]) if s.last_completed else None
    out += _family("dsr_last_completed_timestamp_seconds", "gauge", "Last request completed (0: never).",
                   [({}, _ts(last))])
    out += _family("dsr_status_ok", "gauge", "1 when nothing is overdue or failed for good (dsr status exit 0).",
                   [({}, 1.0 if s.exit_code == 0 else 0.0)])
    return "\n".join(out) + "\n"
