"""The Spark engine on real Delta tables, through Spark Connect to a session-scoped Sail server.

Tables (tests/spark_tables.py) are written with delta-rs in tmp_path: a text subject column in a table
partitioned by day with several files per partition, and integer (64- and 32-bit) subject columns.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsr.engines.base import KEY_COLUMN, CommitResult, Engine, ErasePlan
from dsr.errors import InputError

pytestmark = pytest.mark.spark

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from tests.spark_tables import (  # noqa: E402
    ERASED,
    INT_ERASED,
    KEY,
    OTHERS,
    assert_no_subject_text,
    files,
    plan_and_source,
    rows,
    user_masks,
    write_orders,
    write_users,
)


@pytest.fixture
def engine(spark_connect: Any) -> Iterator[Any]:
    from dsr.engines.spark import SparkEngine

    with SparkEngine(spark_connect) as eng:  # close() leaves the shared session running
        yield eng


# --- Protocol, construction ----------------------------------------------------------------------------------


def test_it_implements_the_engine_protocol(engine: Any) -> None:
    assert isinstance(engine, Engine)
    assert (engine.name, engine.dialect, engine.frame_kind) == ("spark", "spark", "spark")
    assert engine.is_connect


def test_make_engine_with_a_remote_builds_a_connect_engine_that_closes_its_own_session(spark_remote: str) -> None:
    from dsr.engines import make_engine
    from dsr.engines.spark import SparkEngine

    eng = make_engine("spark", remote=spark_remote)
    assert isinstance(eng, SparkEngine) and eng.is_connect
    assert eng.spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert eng.spark.range(3).count() == 3
    eng.close()
    eng.close()  # idempotent


def test_a_connect_engine_holds_pysparks_connect_mode_only_while_open(spark_connect: Any) -> None:
    """GE computes on our frames with pyspark.sql.functions, which need the process-wide Connect flag;
    closing the last engine restores the process, so classic sessions can still be built afterwards."""
    from dsr.engines.spark import SparkEngine

    flag = "SPARK_CONNECT_MODE_ENABLED"
    prior = os.environ.get(flag)
    a, b = SparkEngine(spark_connect), SparkEngine(spark_connect)
    assert os.environ.get(flag) == (prior or "1")
    a.close()
    assert os.environ.get(flag) == (prior or "1")
    b.close()
    assert os.environ.get(flag) == prior
    assert spark_connect.range(2).count() == 2  # a borrowed session is not stopped


def test_connect_to_an_unreachable_remote_is_a_quick_clear_input_error() -> None:
    import socket

    from dsr.engines.spark import SparkEngine

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match=f"cannot reach the Spark Connect server at 127.0.0.1:{port}"):
        SparkEngine.connect(remote=f"sc://127.0.0.1:{port}")
    with pytest.raises(InputError, match="sc://HOST:PORT"):
        SparkEngine.connect(remote="http://127.0.0.1:15002")


# --- metadata ------------------------------------------------------------------------------------------------


def test_schema_version_row_count_and_history_read_the_delta_log(engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    from deltalake import DeltaTable

    assert engine.schema(uri) == pa.schema(DeltaTable(uri).schema().to_arrow())
    assert engine.version(uri) == 6
    assert engine.row_count(uri) == 6 * 6 + 3
    assert engine.row_count(uri, version=0) == 6
    hist = engine.history(uri, limit=3)
    assert [h["version"] for h in hist] == [6, 5, 4]
    assert all("operationMetrics" in h for h in hist)


# --- scan_subjects -------------------------------------------------------------------------------------------


def test_scan_subjects_returns_exactly_the_subjects_rows_in_one_scan(engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    batches = list(engine.scan_subjects(uri, "user_id", pa.array(ERASED)))
    assert engine.scans[uri] == 1
    got = pa.Table.from_batches(batches).to_pylist()
    expected = [r for r in rows(uri) if r["user_id"] in ERASED]
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert len(got) == 2 * 6
    assert pa.Table.from_batches(batches).schema == engine.schema(uri)  # delta-rs' arrow types
    assert_no_subject_text(engine.statements, ERASED)


def test_scan_subjects_projects_the_columns_asked_for(engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    got = pa.Table.from_batches(list(engine.scan_subjects(uri, "user_id", pa.array(ERASED[:1]),
                                                          ["n", "user_id", "signup_at"])))
    assert got.column_names == ["n", "user_id", "signup_at"]
    assert got.schema.field("signup_at").type == pa.timestamp("us", tz="UTC")
    assert sorted(got.column("n").to_pylist()) == sorted(r["n"] for r in rows(uri) if r["user_id"] == ERASED[0])


def test_scan_subjects_on_integer_columns_matches_exactly(engine: Any, tmp_path: Path) -> None:
    uri = write_orders(tmp_path / "orders")
    got = pa.Table.from_batches(list(engine.scan_subjects(uri, "user_no", pa.array(INT_ERASED, pa.int64()))))
    assert sorted(got.column("user_no").to_pylist()) == sorted(INT_ERASED * 3)
    assert got.schema == engine.schema(uri)  # decimal, binary and NOT NULL kept
    got32 = pa.Table.from_batches(list(engine.scan_subjects(uri, "ref32", pa.array([1002], pa.int32()))))
    assert got32.column("order_id").to_pylist() == ["o1-2"]
    assert engine.scans[uri] == 2


def test_scan_subjects_with_no_keys_counts_the_scan_and_yields_nothing(engine: Any, tmp_path: Path) -> None:
    uri = write_orders(tmp_path / "orders")
    assert list(engine.scan_subjects(uri, "user_no", pa.array([], pa.int64()))) == []
    assert list(engine.scan_subjects(uri, "user_no", pa.array([5], pa.int64()))) == []
    assert engine.scans[uri] == 2


def test_null_never_matches_a_subject(engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    got = list(engine.scan_subjects(uri, "user_id", pa.array([None, ERASED[0]], pa.string())))
    assert {r["user_id"] for b in got for r in b.to_pylist()} == {ERASED[0]}


# --- erase: delete -------------------------------------------------------------------------------------------


def test_erase_delete_removes_only_the_subjects_rows_and_rewrites_only_their_files(
    engine: Any, tmp_path: Path
) -> None:
    uri = write_users(tmp_path / "users")
    before_rows, before_files = rows(uri), files(uri)
    holding = {f for f in before_files if any(
        r["user_id"] in ERASED for r in pq.read_table(f).to_pylist())}
    plan, source = plan_and_source(engine, uri, ERASED, {}, erase="delete")
    result = engine.erase(plan, source)

    after_rows = rows(uri)
    assert [r for r in before_rows if r["user_id"] not in ERASED] == after_rows  # value for value
    assert result == CommitResult(
        version_before=6, version_after=7, rows_deleted=12, rows_updated=0,
        rows_copied=result.rows_copied, files_added=result.files_added, files_removed=len(holding),
    )
    assert result.rows_copied == sum(pq.read_table(f).num_rows for f in holding) - 12
    assert before_files - files(uri) == holding  # files without erased rows untouched
    assert engine.row_count(uri, version=result.version_before) - result.rows_deleted == engine.row_count(uri)
    assert_no_subject_text(engine.statements, ERASED)
    commit = engine.history(uri, 1)[0]
    assert commit["version"] == 7 and commit["operation"] == "MERGE"
    assert commit["operationMetrics"]["num_target_rows_deleted"] == 12  # the delta-rs engine's key names too


def test_erase_delete_on_an_integer_subject_column(engine: Any, tmp_path: Path) -> None:
    uri = write_orders(tmp_path / "orders")
    before = rows(uri)
    plan, source = plan_and_source(engine, uri, [str(i) for i in INT_ERASED] + ["not-a-number"], {},
                                    erase="delete", subject="user_no")
    assert source.column(KEY_COLUMN).type == pa.int64()
    result = engine.erase(plan, source)
    assert rows(uri) == [r for r in before if r["user_no"] not in INT_ERASED]
    assert (result.rows_deleted, result.files_removed, result.version_after) == (6, 3, 3)
    assert_no_subject_text(engine.statements, INT_ERASED)


def test_erase_matching_nothing_commits_nothing(engine: Any, tmp_path: Path) -> None:
    uri = write_orders(tmp_path / "orders")
    plan, source = plan_and_source(engine, uri, ["42"], {}, erase="delete", subject="user_no")
    assert engine.erase(plan, source) == CommitResult(version_before=2, version_after=2)
    empty = source.slice(0, 0)
    assert engine.erase(plan, empty) == CommitResult(version_before=2, version_after=2)
    assert engine.version(uri) == 2


# --- erase: anonymise ----------------------------------------------------------------------------------------


def test_erase_anonymise_writes_the_reference_masks_and_leaves_other_rows_unchanged(
    engine: Any, tmp_path: Path
) -> None:
    from dsr.masking import apply_mask, pseudonym_kind

    uri = write_users(tmp_path / "users")
    schema = engine.schema(uri)
    before = rows(uri)
    masks = user_masks()
    plan, source = plan_and_source(engine, uri, ERASED, masks)
    result = engine.erase(plan, source)
    assert (result.rows_updated, result.rows_deleted, result.version_after) == (12, 0, 7)

    expected = []
    for r in before:
        if r["user_id"] in ERASED:
            r = {**r, **{c: apply_mask(m, r[c], key=KEY, subject_id=r["user_id"],
                                       kind=pseudonym_kind(schema.field(c).type)) for c, m in masks.items()}}
        expected.append(r)
    assert rows(uri) == sorted(expected, key=lambda r: repr(sorted(r.items())))
    assert_no_subject_text(engine.statements, ERASED)


def test_erase_anonymise_pseudonymises_integer_columns(engine: Any, tmp_path: Path) -> None:
    from dsr.masking import pseudonym
    from dsr.policy import Mask

    uri = write_orders(tmp_path / "orders")
    before = rows(uri)
    plan, source = plan_and_source(engine, uri, [str(INT_ERASED[0])],
                                    {"user_no": Mask("pseudonymise"), "ref32": Mask("pseudonymise")},
                                    subject="user_no")
    result = engine.erase(plan, source)
    assert result.rows_updated == 3
    p64 = pseudonym(KEY, str(INT_ERASED[0]), "int64")
    p32 = pseudonym(KEY, str(INT_ERASED[0]), "int32")
    after = rows(uri)
    assert [r for r in after if r["user_no"] == p64] == sorted(
        ({**r, "user_no": p64, "ref32": p32} for r in before if r["user_no"] == INT_ERASED[0]),
        key=lambda r: repr(sorted(r.items())))
    assert [r for r in after if r["user_no"] != p64] == [r for r in before if r["user_no"] != INT_ERASED[0]]


def test_erase_writes_what_the_delta_rs_engine_writes(engine: Any, tmp_path: Path) -> None:
    from dsr.engines.deltars import DeltaRsEngine

    rs = DeltaRsEngine()
    uri = write_users(tmp_path / "spark" / "users")
    twin = str(tmp_path / "deltars" / "users")
    shutil.copytree(uri, twin)
    for strategy, masks in (("anonymise", user_masks()), ("delete", {})):
        subjects = ERASED if strategy == "anonymise" else [OTHERS[0]]
        plan, source = plan_and_source(engine, uri, subjects, masks, erase=strategy)
        rs_plan, rs_source = plan_and_source(rs, twin, subjects, masks, erase=strategy)
        ours, theirs = engine.erase(plan, source), rs.erase(rs_plan, rs_source)
        assert rows(uri) == rows(twin)
        assert (ours.rows_deleted, ours.rows_updated, ours.version_before, ours.version_after) == (
            theirs.rows_deleted, theirs.rows_updated, theirs.version_before, theirs.version_after)
    assert engine.schema(uri) == rs.schema(twin)


# --- privacy: statements, commit info, errors ----------------------------------------------------------------


def test_statements_and_commit_info_never_hold_subject_ids(engine: Any, tmp_path: Path) -> None:
    users = write_users(tmp_path / "users")
    orders = write_orders(tmp_path / "orders")
    list(engine.scan_subjects(users, "user_id", pa.array(ERASED)))
    list(engine.validation_frames(orders, ["user_no"], where_in=("user_no", pa.array(INT_ERASED, pa.int64()))))
    engine.erase(*plan_and_source(engine, users, ERASED, user_masks()))
    engine.erase(*plan_and_source(engine, orders, [str(i) for i in INT_ERASED], {}, erase="delete",
                                   subject="user_no"))
    assert len(engine.statements) == 2
    assert all(s.startswith("MERGE INTO delta.`") and f"s.`{KEY_COLUMN}`" in s for s in engine.statements)
    commit_info = [json.dumps(h, default=str) for uri in (users, orders) for h in engine.history(uri)]
    assert_no_subject_text(engine.statements + commit_info, [*ERASED, *INT_ERASED])


def test_a_failed_merge_raises_without_subject_ids_and_leaves_the_table(engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    _, source = plan_and_source(engine, uri, ERASED, user_masks())
    bad = ErasePlan(uri=uri, subject="user_id", strategy="anonymise", updates={"no_such_column": "NULL"})
    with pytest.raises(RuntimeError, match=r"spark: MERGE into .* failed") as info:
        engine.erase(bad, source)
    assert_no_subject_text([str(info.value)], ERASED)
    assert engine.version(uri) == 6
    assert engine.spark.conf.get("spark.databricks.delta.commitInfo.userMetadata", None) is None


def test_erase_rejects_a_strategy_it_cannot_do_before_any_write(engine: Any, tmp_path: Path) -> None:
    uri = write_orders(tmp_path / "orders")
    _, source = plan_and_source(engine, uri, [str(INT_ERASED[0])], {}, erase="delete", subject="user_no")
    with pytest.raises(ValueError, match="retain"):
        engine.erase(ErasePlan(uri=uri, subject="user_no", strategy="retain"), source)
    with pytest.raises(ValueError, match="at least one column"):
        engine.erase(ErasePlan(uri=uri, subject="user_no", strategy="anonymise"), source)
    assert engine.version(uri) == 2 and engine.statements == []


# --- validation frames ---------------------------------------------------------------------------------------


def test_validation_frames_yield_one_spark_frame_with_time_travel_and_filter(engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    engine.erase(*plan_and_source(engine, uri, ERASED, {}, erase="delete"))
    (current,) = engine.validation_frames(uri, ["user_id", "n"])
    assert current.columns == ["user_id", "n"]
    assert current.count() == 6 * 4 + 3
    (old,) = engine.validation_frames(uri, ["user_id"], version=6, where_in=("user_id", pa.array(ERASED)))
    assert sorted(r.user_id for r in old.collect()) == sorted(ERASED * 6)
    assert list(engine.validation_frames(uri, ["user_id"], where_in=("user_id", pa.array([], pa.string())))) == []
    assert engine.scans[uri] == 3


def test_great_expectations_validates_the_spark_connect_frames(engine: Any, tmp_path: Path) -> None:
    from dsr.verify import Validator

    uri = write_users(tmp_path / "users")
    engine.erase(*plan_and_source(engine, uri, ERASED, user_masks()))
    (frame,) = engine.validation_frames(uri, ["user_id"])
    v = Validator.shared()
    ok = v.validate("dsr_erased_absent", frame, "spark", subs={"$subject": "user_id"},
                    params={"erased_subjects": ERASED})
    assert ok.success and ok.rows_checked == 6 * 6 + 3
    (old,) = engine.validation_frames(uri, ["user_id"], version=6)
    bad = v.validate("dsr_erased_absent", old, "spark", subs={"$subject": "user_id"},
                     params={"erased_subjects": ERASED})
    assert not bad.success and bad.unexpected == 12
