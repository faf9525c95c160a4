"""dsr/steps/sweep.py with identifier kinds (issue 23): the suppression list holds digests per kind, and each
subject column is searched only with the digests of its kind.

The people lake (``tests/lakes.py``): person 1 is user 77, ``jane@example.org`` (a kind that trims and lower-cases)
and customer 1234; person 2's customer number is 77. Person 1 is erased by a run, then an ingestion job appends
rows of both people in every table; the sweep must take person 1's rows again (a case variant of the email
included) and leave every row of person 2 as it was. Expectations are read back with deltalake directly, and
pseudonyms come from ``tests/expect.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsr import steps
from dsr.core import audit, control, suppression
from dsr.core.digests import suppression_digest, suppression_secret
from dsr.core.identifiers import Identifier
from dsr.core.policy import Policy
from dsr.delta import access, newfiles
from dsr.engines.base import Search
from dsr.engines.deltars import DeltaRsEngine
from dsr.steps import sweep_search
from dsr.steps.sweep import sweep
from dsr.steps.sweep_state import new_sweep_id
from tests import expect, lakes
from tests.leaks import Leaks

NEW = "new"


@pytest.fixture
def erased(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[lakes.Lake, Policy, str]:
    """The people lake after a run that erased person 1 (filed with all three identifiers), then new rows of both
    people appended (person 1's email in another case, with blanks)."""
    lake = lakes.people(tmp_path / "w").use(monkeypatch)
    policy = lake.policy()
    rid, _ = control.submit(policy, "erase", ids=list(lakes.PERSON_1))
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    lakes.write_people_rows(lake.lake, lakes.people_rows(NEW, jane_email=" JANE@example.org "))
    return lake, policy, rid


def _new(table: Path) -> list[dict[str, Any]]:
    rows = lakes.rows(table)
    return sorted((r for r in rows if NEW in str(r.get("page") or r.get("subject") or r.get("body"))), key=repr)


def test_the_list_holds_one_entry_per_identifier_with_its_kind_and_no_value(
    erased: tuple[lakes.Lake, Policy, str],
) -> None:
    _, policy, rid = erased
    data = pq.read_table(Path(suppression.uri(policy))).to_pylist()
    assert sorted(r["kind"] for r in data) == ["customer_no", "email", "user_id"]
    assert {r["request_id"] for r in data} == {rid}
    secret = suppression_secret(lakes.KEY.encode())
    assert {r["kind"]: r["digest_text"] for r in data} == {  # sha256 of secret:kind:canonical value
        k: hashlib.sha256(f"{secret}:{k}:{v}".encode()).hexdigest() for k, v in
        (("user_id", "77"), ("email", "jane@example.org"), ("customer_no", "1234"))}
    assert all(r["digest_int"] is None for r in data)
    raw = b"".join(p.read_bytes() for p in Path(suppression.uri(policy)).rglob("*") if p.is_file())
    assert b"jane@" not in raw.lower() and b"1234" not in raw


def test_the_sweep_takes_person_1s_new_rows_in_every_column_and_leaves_person_2s(
    erased: tuple[lakes.Lake, Policy, str],
) -> None:
    lake, policy, _ = erased
    report = sweep(policy, DeltaRsEngine(), new_sweep_id())
    assert report.exit_code == 0, report.as_dict()
    by = {t.table: t for t in report.tables}
    assert {n: t.rows for n, t in by.items()} == {"events": 2, "contacts": 2, "tickets": 2, "messages": 2}
    assert all(t.success and t.entries_matched == 1 for t in by.values())
    assert by["messages"].columns == {
        "sender_id": {"kind": "user_id", "role": "owner", "rows": 1, "entries_matched": 1},
        "recipient_id": {"kind": "user_id", "role": "mentioned", "rows": 1, "entries_matched": 1}}
    assert by["messages"].version_after == by["messages"].version_before + 2  # one commit per column

    assert _new(lake.lake / "events") == [{"user_id": "88", "page": "/new/b"}]
    assert _new(lake.lake / "tickets") == [{"customer_no": 77, "subject": "new login"}]  # person 2's 77 stays
    jane = expect.pseudonym(lakes.KEY, "email:jane@example.org")
    contacts = lakes.rows(lake.lake / "contacts")  # the redacted names no longer say which batch a row came from
    assert sorted((r["email"], r["full_name"]) for r in contacts) == sorted(
        [(jane, "[erased]")] * 4 + [("bob@example.org", "Bob old"), ("bob@example.org", "Bob new")])
    assert _new(lake.lake / "messages") == sorted([
        {"sender_id": "88", "recipient_id": expect.pseudonym(lakes.KEY, "user_id:77"), "body": "new hi jane"},
        {"sender_id": "88", "recipient_id": "99", "body": "new hi carol"}], key=repr)

    again = sweep(policy, DeltaRsEngine(), new_sweep_id())
    assert all(t.rows == 0 for t in again.tables)


def test_no_identifier_reaches_the_commits_the_audit_log_or_the_report(
    erased: tuple[lakes.Lake, Policy, str], caplog: pytest.LogCaptureFixture,
) -> None:
    lake, policy, _ = erased
    with caplog.at_level("DEBUG"):
        report = sweep(policy, DeltaRsEngine(), new_sweep_id())
    leaks = Leaks(["jane@example.org", "JANE@example.org", "1234", "77"], whole_token=True)
    assert leaks.in_commit_info(lake.lake) == []
    details = [e["details"] for e in audit.events(policy) if e["event"] == "table_swept"]
    assert details and leaks.in_texts({"report": json.dumps(report.as_dict()), "audit": json.dumps(details),
                                       "log": caplog.text}) == []


def test_a_dry_run_counts_per_column_and_writes_nothing(erased: tuple[lakes.Lake, Policy, str]) -> None:
    lake, policy, _ = erased
    before = lakes.files(lake.lake)
    report = sweep(policy, DeltaRsEngine(), new_sweep_id(), dry_run=True)
    assert {t.table: t.rows for t in report.tables} == {"events": 2, "contacts": 2, "tickets": 2, "messages": 2}
    assert lakes.files(lake.lake) == before


def test_a_user_id_on_the_list_never_matches_a_customer_number_column(
    erased: tuple[lakes.Lake, Policy, str],
) -> None:
    """Person 1's user id 77 is on the list; tickets.customer_no holds 77 (person 2's). The sweep searches that
    column with the customer_no entries only, under that kind's secret: 1234 matches, 77 does not; and a user id's
    digest is not one of 77 under the customer_no kind's secret, so even handed the wrong digests it matches
    nothing."""
    lake, policy, _ = erased
    key = lakes.KEY.encode()
    entries = suppression.load(policy, key)
    secret = suppression_secret(key)
    uri = str(lake.lake / "tickets")
    table = policy.table("tickets")
    info = access.table_info(uri)
    (_, planned, _), = sweep_search.searches(policy, table, info, entries, secret)
    assert planned.digests.to_pylist() == [suppression_digest(f"{secret}:customer_no", "1234")]
    files = newfiles.files_since(uri, None).files
    found = sweep_search.find(policy, DeltaRsEngine(), table, info, entries, secret, files, True)
    assert [(m.view.subject, m.found.values, m.people) for m in found] == [
        ("customer_no", {"1234": "1234"}, ((_rid(policy), (Identifier("customer_no", "1234"),)),))]

    wrong = DeltaRsEngine().find_suppressed(uri, Search(
        "customer_no", "customer_no", pa.int64(), files, True, entries.digests(False, "user_id"),
        f"{secret}:customer_no"))
    assert wrong.values == {}


def _rid(policy: Policy) -> str:
    return control.list_requests(policy, status="completed")[0].request_id


def test_an_implicit_list_entry_under_a_typed_policy_is_reported_not_matched(
    erased: tuple[lakes.Lake, Policy, str],
) -> None:
    """An entry written before the policy declared kinds (kind NULL: an untyped id) matches no column."""
    lake, policy, _ = erased
    key = lakes.KEY.encode()
    text, integer = suppression.digests_of(suppression_secret(key), "88")
    lakes.write_table(suppression.uri(policy), pa.Table.from_pylist([{
        "request_id": "req_00000000000000aa", "added_at": pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py(),
        "digest_text": text, "digest_int": integer, "key_check": pq.read_table(
            Path(suppression.uri(policy))).column("key_check")[0].as_py(), "kind": None}],
        schema=pq.read_schema(next(Path(suppression.uri(policy)).glob("*.parquet")))))
    report = sweep(policy, DeltaRsEngine(), new_sweep_id())
    events = next(t for t in report.tables if t.table == "events")
    assert events.rows == 2 and "1 erasure(s) listed before the policy declared identifier kinds" in str(events.note)
    assert [r for r in lakes.rows(lake.lake / "events") if r["user_id"] == "88"]  # person 2 untouched


@pytest.mark.spark
def test_on_sail_each_column_is_searched_with_its_kinds_digests_and_normalised_on_the_cluster(
    erased: tuple[lakes.Lake, Policy, str], spark_connect: Any,
) -> None:
    """The Spark engine's search (Sail): the email column normalised on the cluster finds the case variant with
    blanks and the plain one, the whole table as Delta or its files as parquet; customer_no finds 1234, not 77;
    the whole sweep then erases what the delta-rs sweep does."""
    from dsr.engines.spark import SparkEngine

    lake, policy, _ = erased
    key = lakes.KEY.encode()
    entries = suppression.load(policy, key)
    secret = suppression_secret(key)
    with SparkEngine(spark_connect) as engine:
        for name, expected in (("contacts", {" JANE@example.org ": "jane@example.org",
                                             "jane@example.org": "jane@example.org"}),
                               ("tickets", {"1234": "1234"})):
            table = policy.table(name)
            info = access.table_info(table.uri)
            files = newfiles.files_since(table.uri, 0).files  # the appended file: read as parquet
            for full in (True, False):
                (m,) = sweep_search.find(policy, engine, table, info, entries, secret, files, full)
                assert m.found.values == expected, (name, full)
        report = sweep(policy, engine, new_sweep_id())
    assert report.exit_code == 0, report.as_dict()
    assert {t.table: t.rows for t in report.tables} == {"events": 2, "contacts": 2, "tickets": 2, "messages": 2}
    assert _new(lake.lake / "tickets") == [{"customer_no": 77, "subject": "new login"}]
    assert sorted(r["email"] for r in lakes.rows(lake.lake / "contacts")) == sorted(
        [expect.pseudonym(lakes.KEY, "email:jane@example.org")] * 4 + ["bob@example.org"] * 2)
