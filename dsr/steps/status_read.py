"""What ``dsr status`` reads, cut to the rows that can change its answer, so it stays fast on a long history.

The control table and the audit log are read as Arrow columns (the audit log without its hashes, and only the
events the status looks at). :func:`reduce` then keeps, as Python objects, only:

- the requests not completed (the backlog, deadlines, failures) and the completed erasures not purged from
  every table yet (the purge clock); the counts by kind and status are taken over every row in Arrow;
- for each table, its newest success and what came after it (the failures since), its newest erase and its
  newest successful sweep — what :func:`dsr.steps.status.summarise` derives a table's health from; the count of
  every failure ever is taken in Arrow;
- the events of the unpurged erasures (their erase, purge and residue events), and the newest ``completed``.

:func:`dsr.steps.status.summarise` gives the same status from these as from every row (a test compares them on
generated histories).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from dsr.core.audit_details import decoded
from dsr.core.masks import Strategy
from dsr.core.policy import Policy
from dsr.core.requests import Request

__all__ = ["EVENTS", "Reduced", "read", "reduce"]

EVENTS = ("completed", "table_failed", "table_swept", "table_exported", "table_erased", "table_retained",
          "table_purged", "residue_scanned", "minimised")
"""The audit events the status looks at."""
_HEALTH = ("table_failed", "table_swept", "table_exported", "table_erased", "table_retained")


@dataclass
class Reduced:
    counts: Counter[tuple[str, str]]  # (kind, status) -> requests, over every row
    requests: list[Request]  # not completed, or completed erasures not purged everywhere
    events: list[dict[str, Any]]  # chain order, details decoded
    failures_total: dict[str, int]  # table -> failures ever recorded
    table_events: Any  # the Arrow rows read (for the count of erasures pending a first sweep)
    erasures: list[str]  # every completed erasure's request id


def read(policy: Policy) -> Reduced:
    """One projected read of each table, then :func:`reduce`."""
    from dsr.core import audit
    from dsr.core.requests import ADDED_COLUMNS, schema
    from dsr.delta import tables as deltautil

    table = deltautil.open_table(policy.requests_uri)
    requests = schema().empty_table() if table is None else deltautil.read_all(table, schema=schema(),
                                                                                fill=ADDED_COLUMNS)
    return reduce(policy, requests, audit.event_columns(policy, EVENTS))


def _health_rows(policy: Policy, events: Any) -> tuple[list[int], dict[str, int]]:
    """The seqs of the rows each table's health needs, and each table's count of failures ever."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dsr.core.audit_details import fields_of

    rows = events.filter(pc.is_in(events["event"], pa.array(_HEALTH)))
    swept = pc.equal(rows["event"], "table_swept")
    # a sweep failed when its details say success false or carry an error
    flags = fields_of(rows["details"], pa.schema([("success", pa.bool_()), ("error", pa.string()),
                                                  ("dry_run", pa.bool_())]))
    success, error, dry = flags["success"], flags["error"], flags["dry_run"]
    sweep_failed = pc.and_(swept, pc.or_kleene(pc.equal(success, False),
                                               pc.and_(pc.is_valid(error), pc.not_equal(error, ""))))
    failed = pc.fill_null(pc.or_kleene(pc.equal(rows["event"], "table_failed"), sweep_failed), False)
    keep: set[int] = set()
    totals: dict[str, int] = {}
    for table in policy.tables:
        mine = pc.fill_null(pc.equal(rows["table_name"], table.name), False)
        seqs = rows["seq"]
        totals[table.name] = int(pc.sum(pc.cast(pc.and_(mine, failed), pa.int64())).as_py() or 0)
        ok = pc.and_(mine, pc.invert(failed))
        last_ok = pc.max(seqs.filter(ok)).as_py()
        since = pc.and_(mine, pc.greater_equal(seqs, last_ok)) if last_ok is not None else mine
        keep.update(seqs.filter(since).to_pylist())
        erased = pc.and_(mine, pc.is_in(rows["event"], pa.array(["table_erased", "table_retained"])))
        real_sweep = pc.and_(pc.and_(ok, swept), pc.invert(pc.fill_null(dry, False)))
        for picked in (erased, real_sweep):
            newest = pc.max(seqs.filter(picked)).as_py()
            if newest is not None:
                keep.add(newest)
    return sorted(keep), totals


def reduce(policy: Policy, requests: Any, events: Any) -> Reduced:
    """The rows :func:`dsr.steps.status.summarise` needs, from every request row and the audit rows of
    :data:`EVENTS` (Arrow tables). Pure."""
    import pyarrow as pa
    import pyarrow.compute as pc

    counts: Counter[tuple[str, str]] = Counter()
    for row in requests.group_by(["kind", "status"]).aggregate([("request_id", "count")]).to_pylist():
        counts[(row["kind"], row["status"])] = int(row["request_id_count"])
    erase_tables = pa.array([t.name for t in policy.tables if t.erase is not Strategy.RETAIN], pa.string())
    done = pc.and_(pc.equal(requests["status"], "completed"), pc.equal(requests["kind"], "erase"))
    erasures = requests["request_id"].filter(done)
    purges = events.filter(pc.and_(pc.equal(events["event"], "table_purged"),
                                   pc.is_in(events["table_name"], erase_tables)))
    per_request = purges.group_by("request_id").aggregate([("table_name", "count_distinct")])
    everywhere = per_request["request_id"].filter(
        pc.greater_equal(per_request["table_name_count_distinct"], len(erase_tables)))
    settled = events["request_id"].filter(pc.equal(events["event"], "minimised"))  # purged means settled
    everywhere = everywhere.filter(pc.is_in(everywhere, value_set=settled))
    unpurged = erasures.filter(pc.invert(pc.is_in(erasures, everywhere)))
    kept = requests.filter(pc.or_(pc.invert(done), pc.is_in(requests["request_id"], unpurged)))
    health, totals = _health_rows(policy, events)
    completed = events["seq"].filter(pc.equal(events["event"], "completed"))
    last = [pc.max(completed).as_py()] if len(completed) else []
    purge_events = pa.array(["table_purged", "residue_scanned", "table_erased", "minimised"])
    theirs = pc.and_(pc.is_in(events["request_id"], unpurged), pc.is_in(events["event"], purge_events))
    wanted = pc.or_(theirs, pc.is_in(events["seq"], pa.array(health + last, pa.int64())))
    rows = decoded(events.filter(wanted).sort_by([("seq", "ascending")]))
    return Reduced(counts, [Request(**r) for r in kept.to_pylist()], rows, totals, events,
                   [str(i) for i in erasures.to_pylist()])
