"""dsr/steps/complete.py (``complete_batch``): the last step settles every erasure of the run.

An erasure erased and verified in every table completes with its result (per table rows and versions) and
outcome ("erased", or "no data found"); one whose table step failed, or whose verification did not pass, fails
with a reason naming the table and never the subject. The steps are driven one at a time on the busy lake of
``tests/lakes.py``; expected counts and versions are computed here from deltalake reads (``lakes.rows``,
``lakes.version``), never by dsr.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dsr import steps
from dsr.core import audit, control
from dsr.core.policy import Policy
from dsr.engines.base import Engine
from dsr.engines.deltars import DeltaRsEngine
from dsr.errors import VerificationError
from tests import lakes
from tests.leaks import Leaks

NOWHERE = "1999"  # a numeric subject with no row in any table
ERASE = [*lakes.ERASE, NOWHERE]
ERASED = [sid for sid in lakes.ERASE if sid != "x-77"]  # the erased subjects that have rows
EVERY_ID = lakes.SUBJECTS + lakes.ERASE + [NOWHERE]


def _is(sid: str, value: Any) -> bool:
    """The subject's id in a row's subject column (text or integer): x-77 never equals an integer."""
    return value is not None and str(value) == sid


def _count(rows: Sequence[dict[str, Any]], column: str, sid: str) -> int:
    return sum(1 for r in rows if _is(sid, r[column]))


def _tables(policy: Policy) -> dict[str, list[dict[str, Any]]]:
    return {t.name: lakes.rows(t.uri) for t in policy.tables}


def _versions(policy: Policy) -> dict[str, int | None]:
    return {t.name: lakes.version(t.uri) for t in policy.tables}


def _drive(policy: Policy, engine: Engine, *, until: str, skip: Collection[str] = (),
           expect_raise: Collection[str] = ()) -> str:
    """The claim, then every step of ``STEPS`` (one call per table where it fans out) up to and including
    ``until``; calls named in ``skip`` ('verify events') are left out, those in ``expect_raise`` must raise.
    Returns the run id."""
    batch = steps.claim_batch(policy)
    run_id = batch["run_id"]
    for step in steps.STEPS:
        for table in batch[step.per_table] if step.per_table else [None]:
            name = f"{step.name} {table}" if table else step.name
            if name in skip:
                continue
            if name in expect_raise:
                with pytest.raises(Exception):  # noqa: B017 - the test that asks for it checks what was recorded
                    steps.call(step, policy, run_id, engine, table)
            else:
                steps.call(step, policy, run_id, engine, table)
        if step.name == until:
            break
    return run_id


def _erasures(policy: Policy, ids: dict[tuple[str, str], str]) -> dict[str, control.Request]:
    """subject id -> its erase request, as the control table holds it now."""
    by_id = {r.request_id: r for r in control.list_requests(policy)}
    return {sid: by_id[rid] for (kind, sid), rid in ids.items() if kind == "erase"}


def _file(policy: Policy) -> dict[tuple[str, str], str]:
    ids = lakes.file_requests(policy)
    ids[("erase", NOWHERE)] = control.submit(policy, "erase", NOWHERE)[0]
    return ids


def _texts(policy: Policy, request_ids: Sequence[str], summary: dict[str, Any], tmp: Path) -> dict[str, str]:
    """Every text a failure leaves behind: request errors, the audit details, the step's return value (with the
    scratch folder's path taken out: its numbered name is no subject id)."""
    texts = {"summary": json.dumps(summary)}
    for r in control.list_requests(policy, ids=list(request_ids)):
        texts[f"error {r.request_id}"] = r.error or ""
        texts[f"result {r.request_id}"] = r.result or ""
    for rid, events in audit.events_by_request(policy, request_ids).items():
        for e in events:
            if e["event"] not in ("received", "claimed"):  # intake events hold no subject id either way
                texts[f"{e['event']} {rid} {e['table_name']}"] = json.dumps(e["details"], default=str)
    return {k: v.replace(str(tmp), "<tmp>") for k, v in texts.items()}


@dataclass(frozen=True)
class Completed:
    """One busy lake after every step of a run, with the counts and versions read before and after."""

    policy: Policy
    ids: dict[tuple[str, str], str]
    run_id: str
    summary: dict[str, Any]
    before: dict[str, list[dict[str, Any]]]
    versions_before: dict[str, int | None]
    versions_after: dict[str, int | None]


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Completed]:
    with pytest.MonkeyPatch.context() as mp:
        policy = lakes.busy(tmp_path_factory.mktemp("complete") / "w").use(mp).policy()
        ids = _file(policy)
        before, versions = _tables(policy), _versions(policy)
        run_id = _drive(policy, DeltaRsEngine(), until="verify")
        summary = steps.complete_batch(policy, run_id)
        yield Completed(policy, ids, run_id, summary, before, versions, _versions(policy))


@pytest.fixture()
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lakes.Lake:
    return lakes.busy(tmp_path / "w").use(monkeypatch)


def test_every_request_of_the_run_completes(completed: Completed) -> None:
    n = len(ERASE) + len(lakes.EXPORT)
    assert completed.summary == {"run_id": completed.run_id, "completed": n, "failed": 0, "exit_code": 0}
    reqs = control.list_requests(completed.policy)
    assert len(reqs) == n and {r.status for r in reqs} == {"completed"}
    assert all(r.error is None and r.attempts == 1 for r in reqs)
    for sid, r in _erasures(completed.policy, completed.ids).items():
        assert [e["event"] for e in audit.events(completed.policy, request_id=r.request_id)][-1] == "completed", sid


def test_the_result_holds_the_rows_and_versions_counted_here(completed: Completed) -> None:
    policy = completed.policy
    for sid in ERASED:
        result = _erasures(policy, completed.ids)[sid].result_json()
        assert result["kind"] == "erase" and result["outcome"] == "erased", sid
        assert sorted(result["tables"]) == sorted(t.name for t in policy.tables)
        for t in policy.tables:
            entry = result["tables"][t.name]
            assert entry["strategy"] == t.erase and entry["rows"] == _count(completed.before[t.name], t.subject, sid)
            if t.name == "consents":
                assert entry["reason"] == "GDPR Art. 7(1): proof of consent" and entry["commits"] == 0
                assert completed.versions_after[t.name] == completed.versions_before[t.name]
                continue
            before = completed.versions_before[t.name]
            assert before is not None and completed.versions_after[t.name] == before + 1, t.name
            assert (entry["version_before"], entry["version_after"]) == (before, before + 1), (sid, t.name)
            assert entry["commits"] == 1 and entry["ge_success"] is True, (sid, t.name)


def test_a_subject_found_nowhere_completes_as_no_data_found(completed: Completed) -> None:
    policy = completed.policy
    for sid in ("x-77", NOWHERE):
        assert all(_count(rows, policy.table(n).subject, sid) == 0 for n, rows in completed.before.items())
        r = _erasures(policy, completed.ids)[sid]
        result = r.result_json()
        assert r.status == "completed" and result["outcome"] == "no data found", sid
        assert {n: e["rows"] for n, e in result["tables"].items()} == {t.name: 0 for t in policy.tables}, sid
    # x-77 cannot be cast to the integer orders.user_no: the result says so; 1999 can, so nothing is noted
    notes = {sid: _erasures(policy, completed.ids)[sid].result_json()["tables"]["orders"].get("note")
             for sid in ("x-77", NOWHERE)}
    assert notes[NOWHERE] is None and notes["x-77"] and "user_no" in notes["x-77"]


@dataclass(frozen=True)
class EraseFailed:
    """One busy lake after every step of a run whose erase commit on orders raised (an injected engine error
    that holds subject ids)."""

    policy: Policy
    ids: dict[tuple[str, str], str]
    summary: dict[str, Any]
    orders_version: int | None
    root: Path


@pytest.fixture(scope="module")
def erase_failed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EraseFailed]:
    root = tmp_path_factory.mktemp("erase_failed")
    with pytest.MonkeyPatch.context() as mp:
        policy = lakes.busy(root / "w").use(mp).policy()
        ids = _file(policy)
        orders_version = lakes.version(policy.table("orders").uri)
        engine = DeltaRsEngine()
        real_erase = engine.erase

        def erase_but_orders(plan: Any, source: Any) -> Any:
            if plan.uri == policy.table("orders").uri:
                raise OSError("write failed on row user_no=1007 (subject 1011) in part-00001")
            return real_erase(plan, source)

        mp.setattr(engine, "erase", erase_but_orders)
        run_id = _drive(policy, engine, until="verify", expect_raise=["erase orders"])
        yield EraseFailed(policy, ids, steps.complete_batch(policy, run_id), orders_version, root)


def test_a_table_whose_erase_failed_fails_its_erasures_for_a_retry_and_names_no_subject(
    erase_failed: EraseFailed,
) -> None:
    policy, ids, summary = erase_failed.policy, erase_failed.ids, erase_failed.summary
    assert summary["completed"] == len(lakes.EXPORT) and summary["failed"] == len(ERASE)
    assert summary["exit_code"] == 1
    for sid, r in _erasures(policy, ids).items():
        assert r.status == "failed" and r.attempts == 1 and r.result is None, sid
        assert control.is_open(r, policy), sid  # not final: the next run retries it
        assert r.error and "erase failed" in r.error, sid
    assert lakes.version(policy.table("orders").uri) == erase_failed.orders_version  # nothing committed there
    erase_ids = [rid for (kind, _), rid in ids.items() if kind == "erase"]
    assert Leaks(EVERY_ID).in_texts(_texts(policy, erase_ids, summary, erase_failed.root)) == []


def test_a_table_whose_erase_failed_is_named_in_the_request_error(erase_failed: EraseFailed) -> None:
    errors = {sid: r.error or "" for sid, r in _erasures(erase_failed.policy, erase_failed.ids).items()}
    assert all("orders" in e for e in errors.values()), errors


def test_a_refused_table_fails_its_erasures_for_good_naming_the_table(lake: lakes.Lake, tmp_path: Path) -> None:
    policy = lake.policy()
    ids = _file(policy)
    engine = DeltaRsEngine()
    run_id = _drive(policy, engine, until="finish_exports")
    orders = Path(policy.table("orders").uri)
    shutil.move(orders / "_delta_log", tmp_path / "orders_log")  # orders can no longer be opened
    for step in steps.STEPS[2:4]:  # erase and verify, per table
        for t in policy.tables:
            steps.call(step, policy, run_id, engine, t.name)
    summary = steps.complete_batch(policy, run_id)

    assert summary["failed"] == len(ERASE) and summary["exit_code"] == 1
    for sid, r in _erasures(policy, ids).items():
        assert r.status == "failed" and r.attempts == policy.max_attempts, sid
        assert not control.is_open(r, policy), sid  # final: retrying cannot help
        assert r.error and "'orders'" in r.error and "delta-rs" in r.error, (sid, r.error)
    erase_ids = [rid for (kind, _), rid in ids.items() if kind == "erase"]
    assert Leaks(EVERY_ID).in_texts(_texts(policy, erase_ids, summary, tmp_path)) == []


def _append_event(uri: str, user_id: str) -> None:
    schema = pa.schema(DeltaTable(uri).schema().to_arrow())
    row = pa.table({"event_id": [999_999], "user_id": [user_id], "event_date": ["2026-01-02"], "page": ["/"],
                    "payload": [b"x"]}, schema=schema)
    lakes.write_table(uri, row, partition_by=["event_date"])


def test_no_erasure_completes_while_verification_failed(lake: lakes.Lake, tmp_path: Path) -> None:
    policy = lake.policy()
    ids = _file(policy)
    engine = DeltaRsEngine()
    run_id = _drive(policy, engine, until="erase")
    _append_event(policy.table("events").uri, "1011")  # an erased id is back after the erase commit
    for t in policy.tables:
        if t.name == "events":
            with pytest.raises(VerificationError, match="events"):
                steps.verify_table(policy, engine, run_id, t.name)
        else:
            steps.verify_table(policy, engine, run_id, t.name)
    summary = steps.complete_batch(policy, run_id)

    assert summary["completed"] == len(lakes.EXPORT) and summary["failed"] == len(ERASE)
    for sid, r in _erasures(policy, ids).items():
        assert r.status == "failed" and r.result is None, sid
        assert r.error and "verification failed on table 'events'" in r.error, (sid, r.error)
        assert control.is_open(r, policy), sid
    erase_ids = [rid for (kind, _), rid in ids.items() if kind == "erase"]
    assert Leaks(EVERY_ID).in_texts(_texts(policy, erase_ids, summary, tmp_path)) == []


def test_no_erasure_completes_when_a_table_was_never_verified(lake: lakes.Lake) -> None:
    policy = lake.policy()
    ids = _file(policy)
    run_id = _drive(policy, DeltaRsEngine(), until="verify", skip=["verify users"])
    summary = steps.complete_batch(policy, run_id)

    assert summary["failed"] == len(ERASE)
    for sid, r in _erasures(policy, ids).items():
        assert r.status == "failed" and r.error and "table 'users' not verified" in r.error, (sid, r.error)
