"""dsr/steps/erase.py (``erase_table``): one commit per table for the run's erasures, or a record of retention.

Each step is driven on its own, as ``dsr run`` and the DAG do: the claim, the exports, then the erase step per
table, on the busy lake of ``tests/lakes.py``. Expectations are counted here in Python from the rows read back
through deltalake directly (``lakes.rows``), never from dsr.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.core.policy import Policy
from dsr.engines.base import Engine
from dsr.engines.deltars import DeltaRsEngine
from tests import expect, lakes

ERASED = [sid for sid in lakes.ERASE if sid != "x-77"]  # the erased subjects that have rows
DELETE_TABLES = ("events", "orders")


def _multiset(rows: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter(repr(sorted(r.items())) for r in rows)


def _is(sid: str, value: Any) -> bool:
    """The subject's id in a row's subject column (text or integer): x-77 never equals an integer."""
    return value is not None and str(value) == sid


def _count(rows: Sequence[dict[str, Any]], column: str, sid: str) -> int:
    return sum(1 for r in rows if _is(sid, r[column]))


def _prepare(policy: Policy, engine: Engine, skip: Sequence[str] = ()) -> str:
    """The claim, the export step of each table (except those in ``skip``) and finish_exports; the run id."""
    batch = steps.claim_batch(policy)
    run_id = batch["run_id"]
    for table in batch["export_tables"]:
        if table not in skip:
            steps.export_table(policy, engine, run_id, table)
    steps.finish_exports(policy, run_id)
    return run_id


def _erase_all(policy: Policy, engine: Engine, run_id: str) -> dict[str, dict[str, Any]]:
    return {t.name: steps.erase_table(policy, engine, run_id, t.name) for t in policy.tables}


def _tables(policy: Policy) -> dict[str, list[dict[str, Any]]]:
    return {t.name: lakes.rows(t.uri) for t in policy.tables}


def _versions(policy: Policy) -> dict[str, int | None]:
    return {t.name: lakes.version(t.uri) for t in policy.tables}


@dataclass(frozen=True)
class Erased:
    """One busy lake after claim, exports and the erase step of every table (read-only for the tests)."""

    lake: lakes.Lake
    policy: Policy
    ids: dict[tuple[str, str], str]
    run_id: str
    before: dict[str, list[dict[str, Any]]]
    after: dict[str, list[dict[str, Any]]]
    versions_before: dict[str, int | None]
    versions_after: dict[str, int | None]
    consents_files_before: dict[str, bytes]
    consents_files_after: dict[str, bytes]
    out: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def erased(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Erased]:
    with pytest.MonkeyPatch.context() as mp:
        lake = lakes.busy(tmp_path_factory.mktemp("erase") / "w").use(mp)
        policy = lake.policy()
        ids = lakes.file_requests(policy)
        engine = DeltaRsEngine()
        consents = Path(policy.table("consents").uri)
        before, versions_before, files_before = _tables(policy), _versions(policy), lakes.files(consents)
        run_id = _prepare(policy, engine)
        out = _erase_all(policy, engine, run_id)
        yield Erased(lake, policy, ids, run_id, before, _tables(policy), versions_before, _versions(policy),
                     files_before, lakes.files(consents), out)


@pytest.fixture()
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lakes.Lake:
    return lakes.busy(tmp_path / "w").use(monkeypatch)


def test_the_lake_has_rows_of_every_erased_subject_to_erase(erased: Erased) -> None:
    # the other tests mean something only if the erased subjects do have rows
    for sid in ERASED:
        assert _count(erased.before["events"], "user_id", sid) > 0, sid
        assert _count(erased.before["users"], "user_id", sid) == 1, sid
        assert _count(erased.before["consents"], "user_id", sid) == 1, sid
    assert sum(_count(erased.before["orders"], "user_no", sid) for sid in ERASED) > 0
    assert any(r["user_id"] is None for r in erased.before["events"])


@pytest.mark.parametrize("name", DELETE_TABLES)
def test_a_delete_table_loses_exactly_the_erased_subjects_rows(erased: Erased, name: str) -> None:
    subject = erased.policy.table(name).subject
    before = erased.before[name]
    gone = sum(_count(before, subject, sid) for sid in lakes.ERASE)
    keep = [r for r in before if not any(_is(sid, r[subject]) for sid in lakes.ERASE)]
    assert len(erased.after[name]) == len(before) - gone
    assert _multiset(erased.after[name]) == _multiset(keep)
    assert erased.out[name]["rows"] == gone and erased.out[name]["requests"] == len(lakes.ERASE)
    assert erased.versions_after[name] == (erased.versions_before[name] or 0) + 1  # one commit for the batch


def test_an_anonymise_table_keeps_its_rows_and_pseudonymises_the_erased_ones(erased: Erased) -> None:
    before, after = erased.before["users"], erased.after["users"]
    assert len(after) == len(before) == len(lakes.SUBJECTS)
    by_id = {r["user_id"]: r for r in after}
    for sid in ERASED:
        assert sid not in by_id, sid
        row = by_id[expect.pseudonym(lakes.KEY, sid)]
        assert row["email"] is None and row["full_name"] == "[erased]", sid
    others = [r for r in before if r["user_id"] not in lakes.ERASE]
    assert _multiset([r for r in after if r["user_id"] in {o["user_id"] for o in others}]) == _multiset(others)
    assert erased.out["users"]["rows"] == len(ERASED)
    assert erased.versions_after["users"] == (erased.versions_before["users"] or 0) + 1


def test_the_retained_table_is_untouched(erased: Erased) -> None:
    assert erased.consents_files_after == erased.consents_files_before
    assert erased.versions_after["consents"] == erased.versions_before["consents"]
    assert erased.out["consents"]["strategy"] == "retain"


def test_the_audit_events_hold_the_rows_counted_here(erased: Erased) -> None:
    policy = erased.policy
    for sid in lakes.ERASE:
        rid = erased.ids[("erase", sid)]
        events = [e for e in audit.events(policy, request_id=rid) if e["event"] in ("table_erased", "table_retained")]
        assert sorted(e["table_name"] for e in events) == sorted(t.name for t in policy.tables), sid
        for e in events:
            t = policy.table(e["table_name"])
            d = e["details"]
            mine = _count(erased.before[t.name], t.subject, sid)
            assert e["run_id"] == erased.run_id
            assert d["rows"] == mine, (sid, t.name)
            if t.name == "consents":
                assert e["event"] == "table_retained" and d["reason"] == "GDPR Art. 7(1): proof of consent"
                continue
            total = sum(_count(erased.before[t.name], t.subject, s) for s in lakes.ERASE)
            assert e["event"] == "table_erased" and d["strategy"] == t.erase, (sid, t.name)
            assert d["rows_matched_total"] == total, (sid, t.name)
            changed = "rows_updated" if t.name == "users" else "rows_deleted"
            assert d[changed] == total, (sid, t.name)
            assert (d["version_before"], d["version_after"]) == (
                erased.versions_before[t.name], erased.versions_after[t.name]), (sid, t.name)
            assert d["repeat"] is False


def test_the_uncastable_subject_is_recorded_as_unmatchable_on_the_integer_column(erased: Erased) -> None:
    rid = erased.ids[("erase", "x-77")]
    details = {e["table_name"]: e["details"] for e in audit.events(erased.policy, request_id=rid)
               if e["event"] == "table_erased"}
    assert details["orders"]["rows"] == 0 and details["orders"]["subject_matchable"] is False
    assert details["events"]["subject_matchable"] is True and details["users"]["subject_matchable"] is True


def test_an_uncastable_subject_alone_matches_nothing_and_commits_nothing(lake: lakes.Lake) -> None:
    policy = lake.policy()
    rid = control.submit(policy, "erase", "x-77")[0]
    before, versions = _tables(policy), _versions(policy)
    engine = DeltaRsEngine()
    out = _erase_all(policy, engine, _prepare(policy, engine))
    assert _versions(policy) == versions
    assert {n: _multiset(rows) for n, rows in _tables(policy).items()} == {
        n: _multiset(rows) for n, rows in before.items()}
    assert out["orders"]["rows"] == 0
    orders = [e["details"] for e in audit.events(policy, request_id=rid)
              if e["event"] == "table_erased" and e["table_name"] == "orders"]
    assert len(orders) == 1 and orders[0]["rows"] == 0 and orders[0]["subject_matchable"] is False
    assert orders[0]["version_after"] == orders[0]["version_before"] == versions["orders"]


def test_an_erasure_waits_while_its_export_is_not_done(lake: lakes.Lake) -> None:
    policy = lake.policy()
    ids = lakes.file_requests(policy)
    engine = DeltaRsEngine()
    before = _tables(policy)
    # orders is never scanned: the exports are incomplete, so the erasure of 1003 (also exported) must wait
    run_id = _prepare(policy, engine, skip=["orders"])
    _erase_all(policy, engine, run_id)
    after = _tables(policy)
    waiting = ids[("erase", "1003")]
    assert control.list_requests(policy, ids=[waiting])[0].status == "pending"
    events = audit.events(policy, request_id=waiting)
    assert [e["event"] for e in events if e["event"] in ("released", "table_erased", "table_retained")] == ["released"]
    for t in policy.tables:
        assert _count(after[t.name], t.subject, "1003") == _count(before[t.name], t.subject, "1003") > 0, t.name
    # the other erasures went ahead
    for sid in ("1007", "1011", "1020"):
        assert _count(after["events"], "user_id", sid) == 0 < _count(before["events"], "user_id", sid), sid
        assert control.list_requests(policy, ids=[ids[("erase", sid)]])[0].status == "running"


def test_a_second_erase_of_the_same_batch_matches_nothing_and_commits_nothing(lake: lakes.Lake) -> None:
    """A retried erase step (same run): no request is left to erase, no commit, no event."""
    policy = lake.policy()
    ids = lakes.file_requests(policy)
    engine = DeltaRsEngine()
    run_id = _prepare(policy, engine)
    first = _erase_all(policy, engine, run_id)
    assert first["events"]["rows"] > 0
    folders = [Path(t.uri) for t in policy.tables]
    versions, data = _versions(policy), lakes.files(*folders)
    erase_ids = [ids[("erase", sid)] for sid in lakes.ERASE]
    events_before = audit.events_by_request(policy, erase_ids)

    again = _erase_all(policy, engine, run_id)

    assert {n: o["requests"] for n, o in again.items()} == {t.name: 0 for t in policy.tables}
    assert all("rows" not in o for o in again.values()), again
    assert _versions(policy) == versions
    assert lakes.files(*folders) == data
    assert audit.events_by_request(policy, erase_ids) == events_before
