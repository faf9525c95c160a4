"""The Arrow count of tables pending their first sweep agrees with the per-event rule in ``sweep_state.states``.

``dsr run``, ``dsr check`` and ``dsr requests`` ask it on every call, so it reads columns instead of events; the
rule must stay the same: generated histories (policy changes, legacy events without a spec, retained tables,
failed and incremental sweeps, erasures without a completed event) are counted both ways.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dsr.core import audit, control
from dsr.core.policy import Policy, load_policy
from dsr.steps.sweep_pending import EVENTS, pending_tables, reduced_states, unapplied
from dsr.steps.sweep_state import spec_of, states

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
POLICY = """\
lake: ./lake
tables:
  - {name: events, path: events, subject: user_id, erase: delete}
  - {name: users, path: users, subject: id, erase: anonymise, mask: {id: nullify, email: redact}}
  - {name: orders, path: orders, subject: user_id, erase: retain, reason: tax law}
"""


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    (tmp_path / "dsr.yml").write_text(POLICY, encoding="utf-8")
    return load_policy(tmp_path / "dsr.yml")


def _event(kind: str, rid: str | None, table: str | None, at: dt.datetime, details: dict[str, Any]
           ) -> dict[str, Any]:
    return {"at": at, "event": kind, "request_id": rid, "table_name": table,
            "details": json.dumps(details, sort_keys=True, separators=(",", ":"))}


def _history(policy: Policy, seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Erasures whose table events carry the current spec, an old spec, only a strategy (legacy) or nothing,
    and full and incremental sweeps (some failed) between them. Odd seeds: almost every event under the current
    spec, so tables are covered and their incremental start is computed."""
    rng = random.Random(seed)
    covered = 0.995 if seed % 2 else 0.0
    erasures: list[str] = []
    rows: list[dict[str, Any]] = []
    for n in range(60):
        at = T0 + dt.timedelta(hours=n)
        if rng.random() < 0.15:  # a sweep of one table
            table = rng.choice(["events", "users"])
            spec = spec_of(policy.table(table)) if rng.random() < 0.7 else "0123456789abcdef"
            details = {"spec": spec, "mode": rng.choice(["full", "since"]), "checked_version": 3,
                       "success": rng.random() < 0.8}
            if rng.random() < 0.5:
                details["started_at"] = (at - dt.timedelta(minutes=30)).isoformat()
            rows.append(_event("table_swept", f"swp_{n:016x}", table, at, details))
            continue
        rid = f"req_{n:016x}"
        erasures.append(rid)
        for table in ("events", "users", "orders"):
            how = "current" if rng.random() < covered else rng.choice(
                ["current", "old", "legacy", "legacy-other", "none"])
            kind = "table_retained" if table == "orders" else "table_erased"
            strategy = str(policy.table(table).erase)
            details: dict[str, Any] = {"rows": 1, "version_after": n}
            if how == "current":
                details |= {"spec": spec_of(policy.table(table)), "strategy": strategy}
            elif how == "old":
                details |= {"spec": "fedcba9876543210", "strategy": strategy}
            elif how == "legacy":
                details |= {"strategy": strategy}
            elif how == "legacy-other":
                details |= {"strategy": "retain" if strategy != "retain" else "delete"}
            if how != "none":
                rows.append(_event(kind, rid, table, at, details))
        if rng.random() < 0.9:  # some erasures have no completed event: they count as completed at the dawn
            rows.append(_event("completed", rid, None, at + dt.timedelta(minutes=rng.choice([1, 90])), {}))
        rows.append(_event("verified", rid, "events", at, {"spec": "noise"}))
    return erasures, rows


def _columns(rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as ``audit.event_columns`` reads them: the four kinds of event, in chain order (seq)."""
    return pa.Table.from_pylist([{"seq": i, **r} for i, r in enumerate(rows) if r["event"] in EVENTS],
                                schema=pa.schema([
                                    ("seq", pa.int64()), ("at", pa.timestamp("us", tz="UTC")), ("event", pa.string()),
                                    ("request_id", pa.string()), ("table_name", pa.string()),
                                    ("details", pa.string())]))


@pytest.mark.parametrize("seed", range(12))
def test_the_arrow_count_agrees_with_the_rule_event_by_event(policy: Policy, seed: int) -> None:
    erasures, rows = _history(policy, seed)
    table = _columns(rows)
    decoded = [{**r, "details": json.loads(r["details"])} for r in rows]

    expected = {name: len(s.unapplied) for name, s in states(policy, erasures, decoded).items()}
    got = unapplied(policy, erasures, table)

    assert got == expected
    assert set(got) == {"events", "users"}  # retained tables are never pending


@pytest.mark.parametrize("seed", range(12))
def test_the_sweep_s_states_from_the_events_that_matter_equal_those_from_every_event(
    policy: Policy, seed: int
) -> None:
    """A sweep decodes only the events of erasures not applied somewhere or completed since a table's last
    sweep: the state of every table (what is unapplied, where the incremental read starts, the last sweep)
    is the same as from the whole log."""
    erasures, rows = _history(policy, seed)
    decoded = [{**r, "details": json.loads(r["details"])} for r in rows]

    assert reduced_states(policy, erasures, _columns(rows)) == states(policy, erasures, decoded)


def test_the_generated_histories_exercise_both_pending_tables_and_incremental_starts(policy: Policy) -> None:
    found = []
    for seed in range(12):
        erasures, rows = _history(policy, seed)
        found += states(policy, erasures, [{**r, "details": json.loads(r["details"])} for r in rows]).values()

    assert sum(s.pending_first_sweep for s in found) >= 6
    assert sum(s.since is not None for s in found) >= 3


def test_no_history_no_erasure_and_no_event(policy: Policy) -> None:
    empty = audit.event_columns(policy, EVENTS)

    assert empty.num_rows == 0
    assert unapplied(policy, [], empty) == {"events": 0, "users": 0}
    assert unapplied(policy, ["req_0000000000000001"], empty) == {"events": 1, "users": 1}
    assert pending_tables(policy) == {}


def test_a_table_added_to_the_policy_counts_every_past_erasure_from_the_tables(
    policy: Policy, tmp_path: Path
) -> None:
    """Through the real control table and audit log: completed erasures with events for ``events`` only."""
    ids = [control.submit(policy, "erase", f"subject-{i}")[0] for i in range(3)]
    run = control.new_run_id()
    control.claim(policy, run)
    spec = spec_of(policy.table("events"))
    audit.append(policy, [audit.AuditEvent("table_erased", request_id=rid, run_id=run, table_name="events",
                                           details={"spec": spec, "strategy": "delete", "rows": 1})
                          for rid in ids])
    control.complete(policy, run, [{"request_id": rid, "result": {}} for rid in ids])

    assert pending_tables(policy) == {"users": 3}


def _erase_events(policy: Policy, ids: list[str], run: str, table: str) -> None:
    spec = spec_of(policy.table(table))
    audit.append(policy, [audit.AuditEvent("table_erased", request_id=rid, run_id=run, table_name=table,
                                           details={"spec": spec, "strategy": str(policy.table(table).erase)})
                          for rid in ids])


def _complete(policy: Policy, n: int, tables: tuple[str, ...], start: int = 0) -> list[str]:
    ids = [control.submit(policy, "erase", f"subject-{start + i}")[0] for i in range(n)]
    run = control.new_run_id()
    control.claim(policy, run)
    for table in tables:
        _erase_events(policy, ids, run, table)
    control.complete(policy, run, [{"request_id": rid, "result": {}} for rid in ids])
    return ids


def _checkpoints(policy: Policy) -> list[dict[str, Any]]:
    return [e for e in audit.events(policy) if e["event"] == "coverage_checked"]


def test_a_run_s_checkpoint_is_written_only_over_a_clean_check_and_later_checks_read_what_came_since(
    policy: Policy,
) -> None:
    from dsr.steps import sweep_checkpoint

    first = _complete(policy, 3, ("events",))
    assert pending_tables(policy, record=True) == {"users": 3}
    assert _checkpoints(policy) == []  # nothing is proven while a table is pending

    _erase_events(policy, first, "run_swept_by_hand", "users")
    assert pending_tables(policy, record=True) == {}
    marks = _checkpoints(policy)
    assert sorted(m["table_name"] for m in marks) == ["events", "users"]
    assert {m["details"]["spec"] for m in marks} == {spec_of(policy.table("events")), spec_of(policy.table("users"))}
    assert pending_tables(policy, record=True) == {}
    assert len(_checkpoints(policy)) == 2  # at most one per day

    # an erasure completed after the checkpoint without its users event: the incremental check sees it
    _complete(policy, 1, ("events",), start=10)
    seen = audit.event_columns(policy, ("table_swept", "coverage_checked"))
    assert sweep_checkpoint.covered_through(policy, seen) is not None
    assert pending_tables(policy) == {"users": 1}


def test_a_table_added_after_a_checkpoint_gets_the_full_check(policy: Policy, tmp_path: Path) -> None:
    _complete(policy, 2, ("events", "users"))
    assert pending_tables(policy, record=True) == {} and len(_checkpoints(policy)) == 2

    grown = tmp_path / "grown.yml"
    grown.write_text(POLICY + "  - {name: tickets, path: tickets, subject: user_id, erase: delete}\n",
                     encoding="utf-8")
    assert pending_tables(load_policy(grown)) == {"tickets": 2}  # no checkpoint of its own: every erasure


def test_a_checkpoint_older_than_the_recent_window_is_still_found_and_used(policy: Policy) -> None:
    """No run for weeks: the newest checkpoint is outside the window the check looks at first; it reads every
    checkpoint and sweep then, and the erasures completed since still count."""
    from dsr.steps import sweep_checkpoint

    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    through = (old - dt.timedelta(days=1)).isoformat()
    audit.append(policy, [
        audit.AuditEvent("coverage_checked", table_name=t, details={"spec": spec_of(policy.table(t)),
                                                                    "through": through})
        for t in ("events", "users")], now=old)
    _complete(policy, 2, ("events",))

    recent = audit.event_columns(policy, ("table_swept", "coverage_checked"),
                                 since=dt.datetime.now(dt.UTC) - sweep_checkpoint.RECENT)
    assert recent.num_rows == 0  # the window alone would see no checkpoint
    assert pending_tables(policy) == {"users": 2}
