"""A run goes through the bookkeeping tables sparingly: each step rebuilds its batch with one filtered read of
the control table and reads audit events by filter; no step reads the whole audit log, and no step reads the
whole control table: even the claim reads only the open requests (a filter on the status), so a long history of
completed requests costs it nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.delta import tables
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes


def _full_reads(before: Counter[tuple[str, str]], uri: str) -> int:
    return tables.reads[(uri.rstrip("/"), "full")] - before[(uri.rstrip("/"), "full")]


def test_a_run_of_8_requests_on_4_tables_reads_the_bookkeeping_tables_sparingly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = lakes.busy(tmp_path / "w").use(monkeypatch).policy()
    lakes.file_requests(policy)
    assert len(policy.tables) == 4 and len(control.list_requests(policy)) == 8
    engine = DeltaRsEngine()

    counts: dict[str, tuple[int, int]] = {}
    before = Counter(tables.reads)
    batch = steps.claim_batch(policy)
    counts["claim"] = (_full_reads(before, policy.requests_uri), _full_reads(before, policy.audit_uri))
    for step in steps.STEPS:
        for table in batch[step.per_table] if step.per_table else [None]:
            before = Counter(tables.reads)
            steps.call(step, policy, batch["run_id"], engine, table)
            name = f"{step.name} {table}" if table else step.name
            counts[name] = (_full_reads(before, policy.requests_uri), _full_reads(before, policy.audit_uri))

    assert len(counts) == 1 + 1 + 4 + 1 + 4 + 4 + 1  # claim, resolve, export x4, finish, erase x4, verify x4, complete
    assert {name: c for name, c in counts.items() if c[0] > 1 or c[1] > 0} == {}, counts
    assert sum(c[0] for c in counts.values()) == 0  # no step reads the whole control table, not even the claim
    assert all(r.status == "completed" for r in control.list_requests(policy))
    # the counters do see a full read of the audit log where there is one (dsr audit verify reads it all)
    before = Counter(tables.reads)
    assert audit.verify_chain(policy)[1] is None
    assert _full_reads(before, policy.audit_uri) >= 1


def test_a_whole_dsr_run_never_reads_the_audit_log_in_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI run adds the question 'which tables are pending their first sweep?', asked over the whole history:
    it too reads the audit log by a filter (four kinds of event, five columns), never every row."""
    from dsr.cli.main import main

    policy = lakes.busy(tmp_path / "w").use(monkeypatch).policy()
    lakes.file_requests(policy)
    before = Counter(tables.reads)

    assert main(["--policy", str(policy.source), "run"]) == 0
    assert "8 completed" in capsys.readouterr().out
    assert _full_reads(before, policy.audit_uri) == 0
    assert _full_reads(before, policy.requests_uri) == 1  # the pending check's three columns of every request


def _fresh(policy: object, run_id: str) -> dict[str, list[dict[str, object]]]:
    """The batch's events as a new process reads them (nothing remembered)."""
    from dsr.steps import batch as batching

    saved, batching._MEMO.events = batching._MEMO.events, None
    try:
        return batching.Batch.load(policy, run_id).events()  # type: ignore[arg-type]
    finally:
        batching._MEMO.events = saved


def test_the_events_a_batch_recorded_are_what_a_new_read_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """What a batch records itself is added to the events it read, without reading the log again, only when its
    commit came right after that read; with another writer's commit between, the next read fetches what is
    new. Either way the events equal a fresh read's: the same rows, in chain order, details decoded."""
    from dsr.steps.batch import Batch

    policy = lakes.busy(tmp_path / "w").use(monkeypatch).policy()
    lakes.file_requests(policy)
    run_id = steps.claim_batch(policy)["run_id"]
    batch = Batch.load(policy, run_id)
    batch.events()
    (one, two, *_) = batch.ids
    before = Counter(tables.reads)
    batch.record([audit.AuditEvent("verified", request_id=rid, run_id=run_id, table_name="users",
                                   details={"suites": [{"suite": "s", "success": True}], "n": 1})
                  for rid in batch.ids])
    remembered = batch.events()
    audit_reads = (policy.audit_uri.rstrip("/"), "filtered")
    assert tables.reads[audit_reads] == before[audit_reads]  # not read again
    assert remembered == _fresh(policy, run_id)
    mine = batch.events()[one][-1]
    assert (mine["event"], mine["details"]) == ("verified", {"suites": [{"suite": "s", "success": True}], "n": 1})

    audit.append(policy, [audit.AuditEvent("table_failed", request_id=two, run_id=run_id, table_name="users",
                                           details={"step": "erase", "reason": "elsewhere", "final": False})])
    batch.record([audit.AuditEvent("verified", request_id=one, run_id=run_id, table_name="events")])
    events = batch.events()
    assert events == _fresh(policy, run_id)
    assert [e["event"] for e in events[two]][-1] == "table_failed"  # the other writer's event is there
    assert all([e["seq"] for e in evs] == sorted(e["seq"] for e in evs) for evs in events.values())


def test_a_step_in_its_own_process_reads_only_the_events_it_asks_for(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``events_of`` in a cold process (an Airflow task) reads only those kinds of event, by filter, and finds
    what the batch's full events hold of them."""
    from dsr.steps import batch as batching

    policy = lakes.busy(tmp_path / "w").use(monkeypatch).policy()
    lakes.file_requests(policy)
    batch = steps.claim_batch(policy)
    erase = next(s for s in steps.STEPS if s.name == "erase")
    for table in batch["erase_tables"]:
        steps.call(erase, policy, batch["run_id"], DeltaRsEngine(), table)
    kinds = ("table_erased", "table_retained")
    for table in batch["erase_tables"]:
        warm = batching.Batch.load(policy, batch["run_id"])
        expected = {rid: [(e["seq"], e["event"], e["details"]) for e in evs]
                    for rid, evs in warm.events_of(kinds, table).items()}
        assert any(expected.values())
        monkeypatch.setattr(batching, "_MEMO", batching._Memo())
        cold = batching.Batch.load(policy, batch["run_id"])
        found = cold.events_of(kinds, table)
        assert {rid: [(e["seq"], e["event"], e["details"]) for e in evs] for rid, evs in found.items()} == expected
        assert cold._events is None and batching._MEMO.events is None  # the full events were never read
