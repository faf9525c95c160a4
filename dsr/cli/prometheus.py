"""The status as Prometheus text exposition format (for node-exporter's textfile collector): built with
``prometheus_client`` (a registry of its own and ``generate_latest``), so names, types, escaping and the
counter's ``_total`` suffix are the library's, not ours.

Gauges and one counter, labelled with ``kind``, ``status`` and ``table`` only: never a subject id, nor a request
id (an unbounded label set). Times are Unix seconds. The counter has no ``_created`` series: it counts
``table_failed`` events in the append-only audit log, which has no start time worth exposing (README lists the
metrics). prometheus_client is imported when the text is rendered, so ``dsr --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

from dsr.steps.status import Status

__all__ = ["render"]

_Sample = tuple[dict[str, str], float]


def _ts(at: dt.datetime | None) -> float:
    return at.timestamp() if at is not None else 0.0


def _families(s: Status) -> Iterator[tuple[str, str, str, list[_Sample]]]:
    """(name, type, help, samples) of every metric, in README's order; a counter's name without ``_total``."""
    kinds = sorted({k for k, _ in s.counts})

    def by_kind(rows: Iterable[dict[str, object]]) -> list[_Sample]:
        n = dict.fromkeys(kinds, 0)
        for r in rows:
            n[str(r["kind"])] = n.get(str(r["kind"]), 0) + 1
        return [({"kind": k}, float(v)) for k, v in sorted(n.items())]

    def per_table(value: Any) -> list[_Sample]:
        return [({"table": t.table}, float(value(t))) for t in s.tables]

    last = dt.datetime.fromisoformat(s.last_completed["at"]) if s.last_completed else None
    yield ("dsr_requests", "gauge", "Requests in the control table by kind and status.",
           [({"kind": k, "status": st}, float(n)) for (k, st), n in sorted(s.counts.items())])
    yield "dsr_requests_overdue", "gauge", "Requests not completed past their due date.", by_kind(s.overdue)
    yield ("dsr_requests_due_soon", "gauge", f"Requests not completed due within {s.soon_days} days.",
           by_kind(s.due_soon))
    yield "dsr_requests_failed_final", "gauge", "Failed requests with no attempt left.", by_kind(s.failed_final)
    yield ("dsr_oldest_open_request_age_seconds", "gauge", "Age of the oldest open request (0: none).",
           [({}, float(s.oldest_open["age_seconds"]) if s.oldest_open else 0.0)])
    yield "dsr_purges_due", "gauge", "Completed erasures whose purge is due.", [({}, float(len(s.purges_due)))]
    yield ("dsr_purges_overdue", "gauge", "Completed erasures not purged by their request's due date.",
           [({}, float(len(s.purges_overdue)))])
    yield ("dsr_table_last_erase_timestamp_seconds", "gauge", "Last erase (or retain) in a table (0: never).",
           per_table(lambda t: _ts(t.last_erase_at)))
    yield ("dsr_table_last_sweep_timestamp_seconds", "gauge", "Last sweep of a table (0: never).",
           per_table(lambda t: _ts(t.last_sweep_at)))
    yield ("dsr_table_failures", "counter", "Failures of a table in the audit log.",
           per_table(lambda t: t.failures_total))
    yield ("dsr_table_failing_runs", "gauge", "Runs in a row that failed in a table since its last success.",
           per_table(lambda t: len(t.failing_runs)))
    yield ("dsr_table_pending_first_sweep", "gauge", "Completed erasures not yet applied to a table.",
           per_table(lambda t: t.pending_first_sweep))
    yield "dsr_last_completed_timestamp_seconds", "gauge", "Last request completed (0: never).", [({}, _ts(last))]
    yield ("dsr_status_ok", "gauge", "1 when nothing is overdue or failed for good (dsr status exit 0).",
           [({}, 1.0 if s.exit_code == 0 else 0.0)])


def render(s: Status) -> str:
    """The exposition text of one status (text format 0.0.4; ends with a newline)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

    class _Collector:
        def collect(self) -> Iterator[Metric]:
            for name, kind, help_text, samples in _families(s):
                labels = sorted({k for lab, _ in samples for k in lab})
                family: Any = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                    name, help_text, labels=labels)
                for lab, value in samples:
                    family.add_metric([lab[k] for k in labels], value)  # no created: no _created series
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry).decode("utf-8")
