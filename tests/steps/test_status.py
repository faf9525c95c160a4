"""``dsr.steps.status.summarise``, the pure function behind ``dsr status``: tables failing run after run, the
purge clock, due-soon windows. Rows are written here the way the control table and the audit log hold them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from dsr.core.policy import Policy, load_policy
from dsr.core.requests import Request
from dsr.steps.status import summarise
from tests import lakes

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)


def _policy(tmp_path: Path, extra: str = "") -> Policy:
    path = lakes.write_policy(tmp_path, lakes.SMALL_POLICY + extra)
    return load_policy(path)


def _request(rid: str, status: str, *, received: dt.datetime, due: dt.datetime, attempts: int = 0,
             kind: str = "erase") -> Request:
    return Request(rid, kind, "not-looked-at", status, None, None, received, due, received, attempts, "run_a", None,
                   None, None, None)


def _event(seq: int, event: str, *, at: dt.datetime, run: str, table: str | None = None, rid: str | None = None,
           **details: Any) -> dict[str, Any]:
    return {"seq": seq, "event": event, "at": at, "run_id": run, "table_name": table, "request_id": rid,
            "details": details}


def test_a_table_failing_in_two_runs_in_a_row_is_failing_repeatedly_until_it_succeeds(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    t0 = NOW - dt.timedelta(days=3)
    events = [
        _event(0, "table_erased", at=t0, run="run_1", table="events", rid="req_1", version_before=1, version_after=2),
        _event(1, "table_failed", at=t0 + dt.timedelta(hours=1), run="run_2", table="events", rid="req_2",
               reason="table 'events': erase failed"),
        _event(2, "table_failed", at=t0 + dt.timedelta(hours=2), run="run_3", table="events", rid="req_2",
               reason="table 'events': erase failed again"),
        _event(3, "table_failed", at=t0 + dt.timedelta(hours=2), run="run_3", table="users", rid="req_2",
               reason="users once"),
    ]
    s = summarise(policy, [], events, NOW)
    health = {t.table: t for t in s.tables}
    assert health["events"].failing_repeatedly and health["events"].failing_runs == ["run_2", "run_3"]
    assert health["events"].last_failure == "table 'events': erase failed again"
    assert health["events"].last_erase_run == "run_1" and health["events"].failures_total == 2
    assert not health["users"].failing_repeatedly
    events.append(_event(4, "table_swept", at=NOW, run="swp_1", table="events", success=True, version_after=3))
    health = {t.table: t for t in summarise(policy, [], events, NOW).tables}
    assert not health["events"].failing_repeatedly and health["events"].last_sweep_at == NOW


def test_purges_are_due_after_the_window_and_overdue_past_the_requests_due_date(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "purge_after_hours: 24\n")
    erased_at = NOW - dt.timedelta(days=2)
    late = _request("req_late", "completed", received=NOW - dt.timedelta(days=40), due=NOW - dt.timedelta(days=10))
    fresh = _request("req_fresh", "completed", received=NOW - dt.timedelta(days=3), due=NOW + dt.timedelta(days=27))
    recent = _request("req_recent", "completed", received=NOW, due=NOW + dt.timedelta(days=30))
    events = [_event(i, "table_erased", at=at, run="run_1", table=t, rid=r.request_id)
              for i, (r, at) in enumerate([(late, erased_at), (fresh, erased_at), (recent, NOW)])
              for t in ("events", "users")]
    s = summarise(policy, [late, fresh, recent], events, NOW)
    assert s.purges_due == ["req_fresh", "req_late"]
    assert s.purges_overdue == ["req_late"] and s.exit_code == 1
    assert s.overdue == []  # completed requests are never overdue; their purge is


def test_due_soon_overdue_oldest_and_failed_for_good(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    a = _request("req_a", "pending", received=NOW - dt.timedelta(days=25), due=NOW + dt.timedelta(days=5))
    b = _request("req_b", "failed", received=NOW - dt.timedelta(days=31), due=NOW - dt.timedelta(days=1),
                 attempts=3, kind="export")
    c = _request("req_c", "failed", received=NOW - dt.timedelta(days=2), due=NOW + dt.timedelta(days=28), attempts=1)
    s = summarise(policy, [a, b, c], [], NOW)
    assert [r["request_id"] for r in s.due_soon] == ["req_a"] and s.due_soon[0]["days_left"] == 5
    assert [r["request_id"] for r in s.overdue] == ["req_b"]
    assert [f["request_id"] for f in s.failed_final] == ["req_b"] and len(s.failed) == 2
    assert s.oldest_open == {"request_id": "req_a", "kind": "erase", "age_seconds": 25 * 86400}  # b: no attempt left
    assert s.counts[("export", "failed")] == 1 and s.counts[("erase", "completed")] == 0
    assert summarise(policy, [a, c], [], NOW).exit_code == 0


# --- the status from the rows it keeps equals the status from every row -------------------------------------


def _generated(policy: Policy, seed: int) -> tuple[list[Request], list[dict[str, Any]]]:
    """Requests of every kind and status, erasures purged from all, some or none of the tables, failures and
    successes of every kind per table (sweeps failed by success false or by an error, dry runs), completions."""
    import random

    rng = random.Random(seed)
    tables = [t.name for t in policy.tables]
    requests, events = [], []
    seq = 0

    def add(event: str, at: dt.datetime, **kw: Any) -> None:
        nonlocal seq
        events.append(_event(seq, event, at=at, **kw))
        seq += 1

    for n in range(80):
        at = NOW - dt.timedelta(hours=200 - 2 * n)
        status = rng.choice(["pending", "running", "completed", "completed", "completed", "failed"])
        kind = rng.choice(["erase", "erase", "export"])
        rid, run = f"req_{n:016x}", f"run_{n % 7}"
        requests.append(_request(rid, status, received=at - dt.timedelta(days=rng.choice([1, 40])),
                                 due=at + dt.timedelta(days=rng.choice([-5, 3, 30])), attempts=rng.choice([0, 1, 3]),
                                 kind=kind))
        for t in tables:
            what = rng.choice(["erased", "failed", "exported", "swept", "sweep-failed", "sweep-error", "dry",
                               "retained", "none"])
            if what == "erased":
                add("table_erased", at, run=run, table=t, rid=rid, version_before=1, version_after=2)
            elif what == "retained":
                add("table_retained", at, run=run, table=t, rid=rid)
            elif what == "exported":
                add("table_exported", at, run=run, table=t, rid=rid, rows=1)
            elif what == "failed":
                add("table_failed", at, run=run, table=t, rid=rid, reason=f"table {t!r}: failed in {run}")
            elif what.startswith("sweep") or what in ("swept", "dry"):
                details: dict[str, Any] = {"success": what != "sweep-failed", "dry_run": what == "dry"}
                if what == "sweep-error":
                    details["error"] = "boom"
                add("table_swept", at, run=f"swp_{n:016x}", table=t, rid=f"swp_{n:016x}", **details)
            if status == "completed" and kind == "erase" and rng.random() < 0.6:
                add("table_purged", at + dt.timedelta(hours=1), run="purge", table=t, rid=rid)
        if status == "completed":
            if kind == "erase" and rng.random() < 0.5:
                add("residue_scanned", at + dt.timedelta(hours=1), run="purge", rid=rid, total=0)
            if kind == "erase" and rng.random() < 0.8:  # settled (or not yet: a purge killed after its tables)
                add("minimised", at + dt.timedelta(hours=1), run="purge", rid=rid, control_residue=0)
            add("completed", at, run=run, rid=rid)
        add("verified", at, run=run, rid=rid)  # an event the status never looks at
    return requests, events


def _as_arrow(requests: list[Request], events: list[dict[str, Any]]) -> tuple[Any, Any]:
    import json

    import pyarrow as pa

    from dsr.core.requests import schema

    audit_schema = pa.schema([("seq", pa.int64()), ("at", pa.timestamp("us", tz="UTC")), ("event", pa.string()),
                              ("request_id", pa.string()), ("run_id", pa.string()), ("table_name", pa.string()),
                              ("details", pa.string())])
    rows = [{**e, "details": json.dumps(e["details"], sort_keys=True, separators=(",", ":"))} for e in events]
    return (pa.Table.from_pylist([r.__dict__ for r in requests], schema=schema()),
            pa.Table.from_pylist(rows, schema=audit_schema))


def test_the_status_from_the_rows_it_keeps_equals_the_status_from_every_row(tmp_path: Path) -> None:
    from dsr.steps.status_read import EVENTS, reduce

    policy = _policy(tmp_path, "purge_after_hours: 24\n")
    kept_fewer = 0
    for seed in range(10):
        requests, events = _generated(policy, seed)
        table_requests, table_events = _as_arrow(requests, events)
        table_events = table_events.filter(pa_is_in(table_events["event"], EVENTS))
        got = reduce(policy, table_requests, table_events)

        full = summarise(policy, requests, events, NOW)
        cut = summarise(policy, got.requests, got.events, NOW, counts=got.counts,
                        failures_total=got.failures_total)

        assert cut.as_dict() == full.as_dict(), seed
        kept_fewer += len(got.events) < len(events) and len(got.requests) < len(requests)
    assert kept_fewer == 10  # and the cut is a real one


def pa_is_in(column: Any, values: tuple[str, ...]) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.is_in(column, pa.array(values))
