"""``dsr.verify.checks``: ``check_table``, ``commit_counts``, ``_sighted_bounds``, ``access_schema``
and ``TableCheck``, on small real Delta tables written with ``tests/lakes.py``.

``check_table`` is called as ``dsr.steps.verify`` and ``dsr.cli.runner.verify_all`` call it: a policy, one of its
tables, the erased subject ids and, for a run, one reconcile record per erase commit (``version_before``,
``version_after``, ``rows_deleted``, ``rows_updated``). Erase commits are made by the delta-rs engine. Expected
rows, pseudonyms and masked values come from literals and ``tests/expect.py``, never from dsr.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dsr import steps
from dsr.core import control
from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec, check_against_lake, load_policy
from dsr.delta import access
from dsr.delta.commits import ColumnStats
from dsr.delta.support import DELETE, UPDATE
from dsr.engines.base import ErasePlan
from dsr.engines.deltars import DeltaRsEngine
from dsr.engines.reading import LOCAL, SubjectPass
from dsr.errors import TableError
from dsr.plan import erasure
from dsr.verify import checks as tablecheck
from dsr.verify.checks import TableCheck, _sighted_bounds, check_table, commit_counts
from dsr.verify.frames import access_schema
from dsr.verify.ge import SuiteOutcome, Validator
from tests import expect, lakes
from tests import real_tables as rt
from tests.leaks import Leaks
from tests.packages import document

ABSENCE = ["dsr_erased_rows", "dsr_erased_absent", "dsr_read_sighted"]
MASK_SUITES = ["dsr_mask_pseudonymise[user_id]", "dsr_mask_nullify[email]", "dsr_mask_redact[full_name]",
               "dsr_mask_year[birth_date]", "dsr_mask_month[signup_at]", "dsr_mask_ipv4_24[last_ip]"]

OWN_POLICY = """\
lake: ./lake
exports: ./exports
pseudonym_key_env: DSR_PSEUDONYM_KEY
tables:
  - name: users
    path: users
    subject: user_id
    erase: anonymise
    mask:
      user_id: pseudonymise
      email: nullify
      full_name: {redact: "[erased]"}
      birth_date: year
      signup_at: month
      last_ip: ipv4_24
  - name: orders
    path: orders
    subject: user_no
    erase: delete
  - name: blind
    path: blind
    subject: user_id
    erase: delete
"""

USERS_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False), pa.field("email", pa.string()),
    pa.field("full_name", pa.string()), pa.field("birth_date", pa.date32()),
    pa.field("signup_at", pa.timestamp("us", tz="UTC")), pa.field("last_ip", pa.string()),
])

BORN = dt.date(1980, 5, 17)
SIGNED = dt.datetime(2020, 3, 15, 9, 7, tzinfo=dt.UTC)


def _u1_anonymised() -> dict[str, Any]:
    """u1's row as README's masks leave it (computed by ``tests/expect.py``)."""
    return {
        "user_id": expect.pseudonym(lakes.KEY, "u1"), "email": None, "full_name": "[erased]",
        "birth_date": expect.year(BORN), "signup_at": expect.month(SIGNED), "last_ip": expect.network_24("10.1.2.3"),
    }


def _u2() -> dict[str, Any]:
    return {"user_id": "u2", "email": "b@example.org", "full_name": "Bob", "birth_date": dt.date(1991, 2, 3),
            "signup_at": dt.datetime(2021, 6, 9, 12, 0, tzinfo=dt.UTC), "last_ip": "10.4.5.6"}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lakes.KEY_ENV, lakes.KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)


@pytest.fixture
def small(tmp_path: Path) -> Policy:
    """lakes.small: events (delete; u1, u2, NULL), users (anonymise), consents (retain)."""
    return lakes.small(tmp_path).policy()


def _own(root: Path, users: list[dict[str, Any]] | None = None, blind: str = "honest") -> Policy:
    """users (anonymise, rows given), orders (delete, integer subject), blind (delete, an all-NULL subject column
    whose log statistics are left honest, made to claim values, or removed)."""
    lake = root / "lake"
    lakes.write_table(lake / "users", pa.Table.from_pylist(users or [_u1_anonymised(), _u2()], schema=USERS_SCHEMA))
    lakes.write_table(lake / "orders", {"order_id": ["o1", "o2", "o3"],
                                        "user_no": pa.array([1001, 1002, None], pa.int64())})
    lakes.write_table(lake / "blind", {"user_id": pa.array([None, None], pa.string()), "page": ["/", "/a"]})
    _rewrite_stats(lake / "blind", blind)
    policy_path = lakes.write_policy(root, OWN_POLICY)
    return lakes.Lake(root, policy_path).policy()


def _rewrite_stats(table: Path, how: str) -> None:
    """Edit the add action's statistics of version 0: ``claims`` says user_id holds no NULL, ``none`` drops them."""
    if how == "honest":
        return
    log = table / "_delta_log" / f"{0:020d}.json"
    lines = []
    for line in log.read_text(encoding="utf-8").splitlines():
        action = json.loads(line)
        if "add" in action:
            stats = json.loads(action["add"]["stats"])
            assert stats["nullCount"]["user_id"] == 2 and stats["numRecords"] == 2
            if how == "claims":
                stats["nullCount"]["user_id"] = 0
                action["add"]["stats"] = json.dumps(stats)
            else:
                del action["add"]["stats"]
        lines.append(json.dumps(action))
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _by_suite(check: TableCheck) -> dict[str, dict[str, Any]]:
    return {s["suite"]: s for s in check.suites}


def _failed(check: TableCheck) -> list[str]:
    return [s["suite"] for s in check.suites if not s["success"]]


def _erase(policy: Policy, table: TableSpec, subject_ids: list[str]) -> dict[str, Any]:
    """One erase commit by the delta-rs engine, as the erase step plans it; returns the reconcile record."""
    info = access.table_info(table.uri)
    keys = erasure.subject_keys([(s, s) for s in subject_ids], info.schema.field(table.subject).type)
    engine = DeltaRsEngine()
    anonymise = table.erase is Strategy.ANONYMISE
    plan = ErasePlan(uri=table.uri, subject=table.subject, operation=UPDATE if anonymise else DELETE,
                     updates=erasure.build_updates(table, info.schema, engine.dialect) if anonymise else {},
                     metadata={"dsr.run_id": "test"})
    source = erasure.build_source(table, info.schema, keys, policy.pseudonym_key() if anonymise else None)
    result = engine.erase(plan, source)
    return {"version_before": result.version_before, "version_after": result.version_after,
            "rows_deleted": result.rows_deleted, "rows_updated": result.rows_updated}


# --- pure helpers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stats", "rows_read", "bounds"), [
    (ColumnStats(files=2, records=10, non_null=8), 10, (8, 8, "log statistics: 8 non-null")),
    (ColumnStats(files=2, records=10, non_null=8), 7, (5, 8, "log statistics: 8 non-null")),  # 3 rows hidden by DVs
    (ColumnStats(files=1, records=10, non_null=2), 5, (0, 2, "log statistics: 2 non-null")),
    (ColumnStats(files=1, records=4, non_null=0), 4, (0, 0, "log statistics: 0 non-null")),
    (ColumnStats(files=0, records=0, non_null=0), 0, (0, 0, "log statistics: 0 non-null")),
    (ColumnStats(files=1, records=10, non_null=8), 11, (11, 11, "more rows read than the log's statistics hold")),
    (ColumnStats(files=1, records=None, non_null=None), 5,
     (1, None, "no complete statistics in the log: an all-NULL read fails")),
    (ColumnStats(files=1, records=5, non_null=None), 5,
     (1, None, "no complete statistics in the log: an all-NULL read fails")),
    (ColumnStats(files=1, records=None, non_null=None), 0,
     (0, None, "no complete statistics in the log: an all-NULL read fails")),
])
def test_sighted_bounds(stats: ColumnStats, rows_read: int, bounds: tuple[int, int | None, str]) -> None:
    assert _sighted_bounds(stats, rows_read) == bounds


def test_access_schema_keeps_the_named_fields_in_the_order_asked() -> None:
    schema = pa.schema([pa.field("a", pa.int64(), nullable=False), pa.field("b", pa.string()),
                        pa.field("c", pa.date32())])
    picked = access_schema(schema, ["c", "a"])
    assert picked == pa.schema([pa.field("c", pa.date32()), pa.field("a", pa.int64(), nullable=False)])
    assert picked.field("a").nullable is False
    with pytest.raises(KeyError):
        access_schema(schema, ["nope"])


def test_table_check_is_a_success_until_one_suite_fails() -> None:
    check = TableCheck("events")
    assert check.as_dict() == {"table": "events", "success": True, "version": None, "suites": [], "notes": []}
    check.add(SuiteOutcome("dsr_erased_rows", success=True, batches=1))
    assert check.success
    check.add(SuiteOutcome("dsr_erased_absent", success=False, batches=1, rows_checked=3, unexpected=1,
                           failed_expectations=["expect_column_values_to_not_be_in_set[user_id]"]))
    check.add(SuiteOutcome("dsr_read_sighted", success=True, batches=1))
    assert check.success is False
    assert check.as_dict()["suites"] == [
        {"suite": "dsr_erased_rows", "success": True, "batches": 1, "rows_checked": 0, "unexpected": 0,
         "failed_expectations": []},
        {"suite": "dsr_erased_absent", "success": False, "batches": 1, "rows_checked": 3, "unexpected": 1,
         "failed_expectations": ["expect_column_values_to_not_be_in_set[user_id]"]},
        {"suite": "dsr_read_sighted", "success": True, "batches": 1, "rows_checked": 0, "unexpected": 0,
         "failed_expectations": []},
    ]


# --- absence ----------------------------------------------------------------------------------------------


def test_a_table_without_the_erased_keys_passes(small: Policy) -> None:
    events = small.table("events")
    check = check_table(small, events, ["u9", "u10"])
    assert check.success, check.as_dict()
    assert [s["suite"] for s in check.suites] == ABSENCE
    assert check.version == 0
    assert _by_suite(check)["dsr_erased_absent"]["rows_checked"] == 3
    assert "v0: 3 rows, 2 non-null values of 'user_id' read (log statistics: 2 non-null)" in check.notes


def test_a_table_still_holding_an_erased_key_fails(small: Policy) -> None:
    events = small.table("events")
    assert sum(r["user_id"] == "u2" for r in lakes.rows(events.uri)) == 1
    check = check_table(small, events, ["u9", "u2"])
    assert check.success is False
    by = _by_suite(check)
    assert by["dsr_erased_rows"]["success"] is False and by["dsr_erased_rows"]["unexpected"] == 1
    assert by["dsr_erased_absent"]["success"] is False and by["dsr_erased_absent"]["unexpected"] == 1
    assert by["dsr_erased_absent"]["failed_expectations"] == ["expect_column_values_to_not_be_in_set[user_id]"]
    assert by["dsr_read_sighted"]["success"] is True  # the read is sighted: it is the data that is wrong
    assert Leaks(["u2"]).in_texts({"check": json.dumps(check.as_dict())}) == []


def test_past_big_in_keys_the_rows_found_are_the_full_pass_matches_and_still_fail(
        small: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """More erased keys than the reader's IN list takes: the rows-found suite validates the full pass's matches
    (the same whole-column read, not a second one), and a key still held fails both absence suites."""
    events = small.table("events")
    many = [f"x{i}" for i in range(access.BIG_IN + 1)]
    scanned: list[Any] = []
    scan = access.scan
    monkeypatch.setattr(access, "scan", lambda *a, **kw: (scanned.append(kw.get("where_in")), scan(*a, **kw))[1])
    passed = check_table(small, events, many)
    assert passed.success, passed.as_dict()
    assert [s["suite"] for s in passed.suites] == ABSENCE and scanned == [None]  # one read: the full pass
    failed = _by_suite(check_table(small, events, [*many, "u2"]))
    assert failed["dsr_erased_rows"]["success"] is False and failed["dsr_erased_rows"]["unexpected"] == 1
    assert failed["dsr_erased_absent"]["success"] is False and failed["dsr_erased_absent"]["unexpected"] == 1


def test_an_erased_key_in_an_integer_column_fails_and_an_uncastable_id_matches_nothing(tmp_path: Path) -> None:
    policy = _own(tmp_path)
    orders = policy.table("orders")
    held = check_table(policy, orders, ["1002"])
    assert held.success is False
    assert _failed(held) == ["dsr_erased_rows", "dsr_erased_absent"]
    only_text = check_table(policy, orders, ["x-77"])
    assert only_text.success, only_text.as_dict()
    assert [s["suite"] for s in only_text.suites] == ["dsr_read_sighted"]
    assert only_text.notes[0] == ("no erased person's identifier fits the subject column 'user_no' (kind 'subject'): "
                                  "nothing to find")


def test_a_retained_table_is_not_read_and_says_why(small: Policy) -> None:
    check = check_table(small, small.table("consents"), ["u1"])
    assert check.as_dict() == {"table": "consents", "success": True, "version": None, "suites": [],
                               "notes": ["retained: GDPR Art. 7(1): proof of consent"]}


def test_a_table_that_cannot_be_read_raises_table_error_without_the_subject(small: Policy) -> None:
    import shutil

    events = small.table("events")
    shutil.rmtree(events.uri)
    with pytest.raises(TableError) as err:
        check_table(small, events, ["u2-secret-id"])
    assert "\n" not in str(err.value)
    assert Leaks(["u2-secret-id"], whole_token=False).found_in(str(err.value)) == []


# --- sight: a blind read is a failure, never a pass ------------------------------------------------------------


def test_an_all_null_read_the_log_statistics_contradict_fails(tmp_path: Path) -> None:
    policy = _own(tmp_path, blind="claims")
    blind = policy.table("blind")
    assert [r["user_id"] for r in lakes.rows(blind.uri)] == [None, None]  # every value reads NULL...
    check = check_table(policy, blind, ["u1"])
    by = _by_suite(check)
    assert by["dsr_erased_rows"]["success"] is True  # ...so no erased id is found...
    assert by["dsr_erased_absent"]["success"] is True
    assert by["dsr_read_sighted"]["success"] is False  # ...but the log says the column holds 2 values
    assert by["dsr_read_sighted"]["failed_expectations"] == ["expect_column_values_to_be_between[non_null_read]"]
    assert check.success is False
    assert "v0: 2 rows, 0 non-null values of 'user_id' read (log statistics: 2 non-null)" in check.notes


def test_an_all_null_read_without_statistics_fails(tmp_path: Path) -> None:
    policy = _own(tmp_path, blind="none")
    check = check_table(policy, policy.table("blind"), ["u1"])
    assert check.success is False
    assert _failed(check) == ["dsr_read_sighted"]
    assert ("v0: 2 rows, 0 non-null values of 'user_id' read (no complete statistics in the log: an all-NULL read "
            "fails)") in check.notes


def test_an_all_null_column_the_log_agrees_with_passes(tmp_path: Path) -> None:
    policy = _own(tmp_path, blind="honest")
    check = check_table(policy, policy.table("blind"), ["u1"])
    assert check.success, check.as_dict()
    assert "v0: 2 rows, 0 non-null values of 'user_id' read (log statistics: 0 non-null)" in check.notes


# --- masks ------------------------------------------------------------------------------------------------


def test_an_anonymised_row_holding_every_mask_passes(tmp_path: Path) -> None:
    policy = _own(tmp_path)
    check = check_table(policy, policy.table("users"), ["u1"])
    assert check.success, check.as_dict()
    assert [s["suite"] for s in check.suites] == ABSENCE + MASK_SUITES
    assert all(s["rows_checked"] == 1 for s in check.suites if s["suite"] in MASK_SUITES)


@pytest.mark.parametrize(("column", "wrong", "suite"), [
    ("email", "a@example.org", "dsr_mask_nullify[email]"),
    ("full_name", "Ann", "dsr_mask_redact[full_name]"),
    ("birth_date", BORN, "dsr_mask_year[birth_date]"),
    ("signup_at", SIGNED, "dsr_mask_month[signup_at]"),
    ("signup_at", dt.datetime(2020, 3, 1, 9, 7, tzinfo=dt.UTC), "dsr_mask_month[signup_at]"),
    ("last_ip", "10.1.2.3", "dsr_mask_ipv4_24[last_ip]"),
])
def test_a_masked_row_with_a_wrong_value_fails(tmp_path: Path, column: str, wrong: Any, suite: str) -> None:
    row = {**_u1_anonymised(), column: wrong}
    other_psn = {**_u2(), "user_id": expect.pseudonym(lakes.KEY, "u2")}  # not erased now: never singled out
    policy = _own(tmp_path, users=[row, other_psn, _u2()])
    check = check_table(policy, policy.table("users"), ["u1"])
    assert check.success is False
    assert _failed(check) == [suite]
    assert _by_suite(check)[suite]["unexpected"] == 1


def test_a_masked_row_holding_the_raw_subject_fails_absence_not_masks(tmp_path: Path) -> None:
    raw = {**_u1_anonymised(), "user_id": "u1"}
    policy = _own(tmp_path, users=[raw, _u2()])
    check = check_table(policy, policy.table("users"), ["u1"])
    assert check.success is False
    assert _failed(check) == ["dsr_erased_rows", "dsr_erased_absent"]


# --- erase commits by the delta-rs engine, reconciled -------------------------------------------------------


def test_a_delete_commit_reconciles_and_a_misreported_one_fails(small: Policy) -> None:
    events = small.table("events")
    rec = _erase(small, events, ["u2"])
    assert rec == {"version_before": 0, "version_after": 1, "rows_deleted": 1, "rows_updated": 0}
    assert sorted(map(str, (r["user_id"] for r in lakes.rows(events.uri)))) == ["None", "u1"]
    check = check_table(small, events, ["u2"], [rec])
    assert check.success, check.as_dict()
    assert [s["suite"] for s in check.suites] == [*ABSENCE, "dsr_reconcile[v0->v1]"]
    assert check.version == 1
    misreported = check_table(small, events, ["u2"], [{**rec, "rows_deleted": 0}])
    assert _failed(misreported) == ["dsr_reconcile[v0->v1]"]
    assert _by_suite(misreported)["dsr_reconcile[v0->v1]"]["failed_expectations"] == [
        "expect_column_values_to_be_between[rows_after]", "expect_column_values_to_be_between[rows_changed]"]


def test_an_anonymise_commit_leaves_readme_masks_and_reconciles(tmp_path: Path) -> None:
    policy = _own(tmp_path, users=[{**_u2(), "user_id": "u1", "email": "a@example.org", "full_name": "Ann",
                                    "birth_date": BORN, "signup_at": SIGNED, "last_ip": "10.1.2.3"}, _u2()])
    users = policy.table("users")
    rec = _erase(policy, users, ["u1"])
    assert rec["rows_updated"] == 1 and rec["rows_deleted"] == 0
    assert sorted(lakes.rows(users.uri), key=lambda r: r["user_id"]) == [_u1_anonymised(), _u2()]  # psn_ < u2
    check = check_table(policy, users, ["u1"], [rec])
    assert check.success, check.as_dict()
    assert [s["suite"] for s in check.suites] == [*ABSENCE, *MASK_SUITES, "dsr_reconcile[v0->v1]"]


def test_commit_counts_at_each_version(small: Policy) -> None:
    events = small.table("events")
    keys = pa.array(["u1"], pa.string())
    before = lakes.rows(events.uri, 0)
    assert commit_counts(events.uri, "user_id", 0, keys, ("none", None)) == {
        "rows": len(before), "keyed": sum(r["user_id"] == "u1" for r in before), "marked": 0,
        "others": sum(r["user_id"] != "u1" for r in before)}
    assert commit_counts(events.uri, "user_id", 0, keys, ("null", None)) == {
        "rows": 3, "keyed": 1, "marked": 1, "others": 1}
    _erase(small, events, ["u1"])
    assert commit_counts(events.uri, "user_id", 1, keys, ("none", None)) == {
        "rows": 2, "keyed": 0, "marked": 0, "others": 2}
    assert commit_counts(events.uri, "user_id", 0, keys, ("none", None))["keyed"] == 1  # time travel


def test_the_reconcile_after_side_is_the_full_pass_at_that_version(
        small: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit's after-side is the version the checks read: its rows, erased subjects' rows and NULL subjects
    come from the full pass (no second count), and they decide the verdict (a pass that counted one row more
    fails the reconcile)."""
    events = small.table("events")
    rec = _erase(small, events, ["u1"])
    counted: list[int | None] = []
    count_rows = access.count_rows
    monkeypatch.setattr(access, "count_rows", lambda uri, version=None, **kw: (
        counted.append(version), count_rows(uri, version, **kw))[1])
    check = check_table(small, events, ["u1"], [rec])
    assert check.success, check.as_dict()
    assert rec["version_after"] not in counted and rec["version_before"] in counted
    full_pass = LOCAL.subject_pass

    def one_more(*args: Any, **kw: Any) -> SubjectPass:
        seen = full_pass(*args, **kw)
        return SubjectPass(seen.rows + 1, seen.non_null + 1, seen.survivors)

    monkeypatch.setattr(LOCAL, "subject_pass", one_more)
    off = check_table(small, events, ["u1"], [rec])
    assert not off.success and "dsr_reconcile[v0->v1]" in [s["suite"] for s in off.suites if not s["success"]]


def test_commit_counts_with_a_pseudonym_marker(tmp_path: Path) -> None:
    policy = _own(tmp_path)
    users = policy.table("users")
    psn = expect.pseudonym(lakes.KEY, "u1")
    counts = commit_counts(users.uri, "user_id", 0, pa.array(["u1"]), ("pseudonym", pa.array([psn])))
    assert counts == {"rows": 2, "keyed": 0, "marked": 1, "others": 1}


# --- a blind read of a real column-mapped table ----------------------------------------------------------------
# A column-mapping table (written by Spark: parquet files hold physical names such as ``col-5f42...``).
#
# The old path read it with ``to_pyarrow_dataset``, which sees every column-mapped column as NULL: the export
# was empty, the MERGE matched nothing, and the absence check passed over a column of NULLs — "completed" with
# the person still there. Now the table is read through the access layer (names mapped) and erased; and a read
# that does come back blind fails verification instead of passing it.

TABLE = rt.VENDORED / "data-skipping-basic-stats-all-types-columnmapping-name"


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(lakes.KEY_ENV, lakes.KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    case = rt.case_for(TABLE)
    assert case is not None and case.subject == "as_int" and case.value == 0
    policy = load_policy(lakes.around(tmp_path, case, "delete").policy_path)
    check_against_lake(policy)
    return {"case": case, "policy": policy, "uri": policy.tables[0].uri}


def test_the_old_reader_saw_nulls_and_its_absence_check_passed_with_the_person_present(lake: dict[str, Any]) -> None:
    uri = lake["uri"]
    old = DeltaTable(uri).to_pyarrow_table()
    assert old.num_rows == 1 and old.column("as_int").null_count == 1  # blind: every value NULL
    assert [r["as_int"] for r in lakes.rows(uri)] == [0]  # yet the row of subject 0 is there
    outcome = Validator.shared().validate(
        "dsr_erased_absent", old.select(["as_int"]).to_pandas(), "pandas", subs={"$subject": "as_int"},
        params={"erased_subjects": [0]},
    )
    assert outcome.success  # what made the old path report "erased"


def test_dsr_now_exports_and_erases_the_row(lake: dict[str, Any]) -> None:
    policy, uri = lake["policy"], lake["uri"]
    erase_id = control.submit(policy, "erase", "0")[0]
    export_id = control.submit(policy, "export", "0")[0]
    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 0, report.as_dict()
    assert lakes.rows(uri) == []
    export = control.list_requests(policy, ids=[export_id])[0]
    doc = document(export.export_uri)
    assert [row["as_int"] for row in doc["tables"][policy.tables[0].name]] == [0]
    result = control.list_requests(policy, ids=[erase_id])[0].result_json()
    assert result["tables"][policy.tables[0].name]["rows"] == 1


def test_a_blind_read_fails_verification_instead_of_passing(
    lake: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = lake["policy"]
    table = policy.tables[0]
    real_scan = access.scan

    def blind(uri: str, columns: Any = None, **kw: Any) -> Any:
        """The old reader's view: the mapped columns come back NULL."""
        for batch in real_scan(uri, columns, **kw):
            yield pa.RecordBatch.from_arrays(
                [pa.nulls(batch.num_rows, f.type) for f in batch.schema], schema=batch.schema)

    sighted = tablecheck.check_table(policy, table, ["0"])
    assert not sighted.success  # the row is there: the honest read finds it
    monkeypatch.setattr(access, "scan", blind)
    check = tablecheck.check_table(policy, table, ["0"])
    by_suite = {s["suite"]: s for s in check.suites}
    assert by_suite["dsr_erased_absent"]["success"] is True  # NULLs are never in the erased set...
    assert by_suite["dsr_read_sighted"]["success"] is False  # ...but a blind column is not a pass
    assert not check.success
    assert any("log statistics: 1 non-null" in n for n in check.notes)
