"""The Spark engine on real Delta tables, through Spark Connect to a session-scoped Sail server.

Tables (tests/spark_tables.py) are written with delta-rs in tmp_path: a text subject column in a table
partitioned by day with several files per partition, and integer (64- and 32-bit) subject columns. The engine
only writes: every read here (rows, versions, schemas, counts) goes through dsr's access layer, as in dsr.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsr.delta import access, commits
from dsr.delta.support import DELTA_RS, DELTA_SPARK, ENGINE_SUPPORT, SAIL
from dsr.engines.base import KEY_COLUMN, CommitResult, Engine, ErasePlan
from dsr.errors import InputError

pytestmark = pytest.mark.spark

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from tests import expect  # noqa: E402
from tests.spark_tables import (  # noqa: E402
    ERASED,
    INT_ERASED,
    KEY,
    OTHERS,
    assert_no_subject_text,
    files,
    masked_users,
    plan_and_source,
    rows,
    table_spec,
    user_masks,
    write_orders,
    write_users,
)

SERVER_ENV = "DSR_SPARK_SERVER"


def version(uri: str) -> int:
    return access.table_info(uri).version


@pytest.fixture
def engine(spark_connect: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from dsr.engines.spark import SparkEngine

    monkeypatch.delenv(SERVER_ENV, raising=False)  # detect the server, whatever the shell says
    with SparkEngine(spark_connect) as eng:  # close() leaves the shared session running
        yield eng


# --- Protocol, construction, server kind ---------------------------------------------------------------------


def test_it_implements_the_engine_protocol(engine: Any) -> None:
    assert isinstance(engine, Engine)
    assert (engine.name, engine.dialect) == ("spark", "spark")
    assert engine.is_connect
    assert engine.server == "sail"  # Sail answers current_catalog() with 'sail'
    assert engine.support is ENGINE_SUPPORT["spark:sail"] is SAIL
    # the engine only writes: every read goes through dsr.delta.access
    for gone in ("scan_subjects", "validation_frames", "row_count", "schema", "version", "scans", "frame_kind"):
        assert not hasattr(engine, gone), gone


def test_engines_leave_pysparks_process_wide_connect_mode_alone(
    spark_connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither an engine nor a failed construction turns the process into pyspark's Connect mode, so classic
    sessions (chispa tests, a classic engine) can still be built beside a Connect engine."""
    from dsr.engines.spark import SparkEngine

    flag = "SPARK_CONNECT_MODE_ENABLED"
    prior = os.environ.get(flag)
    monkeypatch.setenv(SERVER_ENV, "hadoop")
    with pytest.raises(InputError):
        SparkEngine(spark_connect)
    assert os.environ.get(flag) == prior
    with pytest.raises(InputError, match="unknown Spark server kind 'bogus'"):
        SparkEngine(spark_connect, server="bogus")
    monkeypatch.delenv(SERVER_ENV)
    a = SparkEngine(spark_connect)
    assert os.environ.get(flag) == prior
    a.close()
    assert os.environ.get(flag) == prior
    assert spark_connect.range(2).count() == 2  # a borrowed session is not stopped


def test_engine_support_names_what_the_configured_engine_writes(
    spark_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsr.engines import engine_support

    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    assert engine_support("delta-rs") is DELTA_RS
    assert engine_support("spark") is DELTA_SPARK  # no remote: a classic session with delta-spark
    assert engine_support("spark", remote=spark_remote) is SAIL  # asks the server
    monkeypatch.setenv(SERVER_ENV, "unknown")
    assert engine_support("spark", remote=spark_remote) is ENGINE_SUPPORT["spark:unknown"]
    with pytest.raises(InputError, match="--remote"):
        engine_support("delta-rs", remote=spark_remote)


def test_make_engine_with_a_remote_builds_a_connect_engine_that_closes_its_own_session(
    spark_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsr.engines import make_engine
    from dsr.engines.spark import SparkEngine

    monkeypatch.delenv(SERVER_ENV, raising=False)
    eng = make_engine("spark", remote=spark_remote)
    assert isinstance(eng, SparkEngine) and eng.is_connect
    assert (eng.server, eng.support) == ("sail", SAIL)
    assert eng.spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert eng.spark.range(3).count() == 3
    eng.close()
    eng.close()  # idempotent


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


# --- history -------------------------------------------------------------------------------------------------


def test_history_reads_the_delta_log_newest_first(engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    hist = engine.history(uri, limit=3)
    assert [h["version"] for h in hist] == [6, 5, 4]
    assert all("operationMetrics" in h for h in hist)
    assert [(h["version"], h["operation"]) for h in hist] == [
        (h["version"], h["operation"]) for h in commits.history(uri, 3)]


# --- erase: delete -------------------------------------------------------------------------------------------


def test_erase_delete_removes_only_the_subjects_rows_and_rewrites_only_their_files(
    engine: Any, tmp_path: Path
) -> None:
    uri = write_users(tmp_path / "users")
    before_rows, before_files = rows(uri), files(uri)
    before_info = access.table_info(uri)
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
    assert result.committed
    assert result.rows_copied == sum(pq.read_table(f).num_rows for f in holding) - 12
    assert before_files - files(uri) == holding  # files without erased rows untouched
    assert access.count_rows(uri, version=result.version_before) - result.rows_deleted == access.count_rows(uri)
    assert access.count_rows(uri, where_in=("user_id", pa.array(ERASED))) == 0
    assert list(access.scan(uri, ["user_id"], where_in=("user_id", pa.array(ERASED)))) == []
    assert access.table_info(uri).fingerprint() == before_info.fingerprint()  # protocol, schema... kept
    commit = commits.commit_actions(uri, 7)
    assert {p for p, _ in commit.removes} <= commits.live_files(uri, 6)  # every remove names a live file
    assert commit.files_rewritten == len(holding) and commit.dv_marked == 0
    assert_no_subject_text(engine.statements, ERASED)
    commit_info = engine.history(uri, 1)[0]
    assert commit_info["version"] == 7 and commit_info["operation"] == "MERGE"
    assert commit_info["operationMetrics"]["num_target_rows_deleted"] == 12  # the delta-rs engine's key names too


def test_erase_delete_on_an_integer_subject_column(engine: Any, tmp_path: Path) -> None:
    uri = write_orders(tmp_path / "orders")
    before = rows(uri)
    before_info = access.table_info(uri)
    plan, source = plan_and_source(engine, uri, [str(i) for i in INT_ERASED] + ["not-a-number"], {},
                                    erase="delete", subject="user_no")
    assert source.column(KEY_COLUMN).type == pa.int64()
    result = engine.erase(plan, source)
    assert rows(uri) == [r for r in before if r["user_no"] not in INT_ERASED]
    assert (result.rows_deleted, result.files_removed, result.version_after) == (6, 3, 3)
    # decimal, binary and NOT NULL kept: the schema the access layer reads is the one before
    assert access.table_info(uri).fingerprint() == before_info.fingerprint()
    assert access.table_info(uri).schema.field("user_no").nullable is False
    assert_no_subject_text(engine.statements, INT_ERASED)

    # a 32-bit subject column matches exactly too
    plan32, source32 = plan_and_source(engine, uri, ["1002"], {}, erase="delete", subject="ref32")
    assert source32.column(KEY_COLUMN).type == pa.int32()
    assert engine.erase(plan32, source32).rows_deleted == 1
    assert rows(uri) == [r for r in before if r["user_no"] not in INT_ERASED and r["ref32"] != 1002]


def test_a_null_key_never_matches_a_null_subject(engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    before = rows(uri)
    nulls = [r for r in before if r["user_id"] is None]
    assert len(nulls) == 6
    plan, _ = plan_and_source(engine, uri, ERASED[:1], {}, erase="delete")
    source = pa.table({KEY_COLUMN: pa.array([None, ERASED[0]], pa.string())})
    result = engine.erase(plan, source)
    assert result.rows_deleted == 6
    assert rows(uri) == [r for r in before if r["user_id"] != ERASED[0]]
    assert access.count_rows(uri, null_column="user_id") == len(nulls)


def test_erase_matching_nothing_commits_nothing(engine: Any, tmp_path: Path) -> None:
    uri = write_orders(tmp_path / "orders")
    plan, source = plan_and_source(engine, uri, ["42"], {}, erase="delete", subject="user_no")
    result = engine.erase(plan, source)
    assert result == CommitResult(version_before=2, version_after=2)
    assert not result.committed
    empty = source.slice(0, 0)
    assert engine.erase(plan, empty) == CommitResult(version_before=2, version_after=2)
    assert version(uri) == 2


# --- erase: anonymise ----------------------------------------------------------------------------------------


def test_erase_anonymise_writes_the_reference_masks_and_leaves_other_rows_unchanged(
    engine: Any, tmp_path: Path
) -> None:

    uri = write_users(tmp_path / "users")
    info = access.table_info(uri)
    schema = info.schema
    before = rows(uri)
    masks = user_masks()
    plan, source = plan_and_source(engine, uri, ERASED, masks)
    result = engine.erase(plan, source)
    assert (result.rows_updated, result.rows_deleted, result.version_after) == (12, 0, 7)

    expected = masked_users(before, masks, schema)
    assert rows(uri) == sorted(expected, key=lambda r: repr(sorted(r.items())))
    assert access.table_info(uri).fingerprint() == info.fingerprint()
    assert access.count_rows(uri) == access.count_rows(uri, version=6)
    assert_no_subject_text(engine.statements, ERASED)


def test_erase_anonymise_pseudonymises_integer_columns(engine: Any, tmp_path: Path) -> None:
    from dsr.core.masks import Mask

    uri = write_orders(tmp_path / "orders")
    before = rows(uri)
    plan, source = plan_and_source(engine, uri, [str(INT_ERASED[0])],
                                    {"user_no": Mask("pseudonymise"), "ref32": Mask("pseudonymise")},
                                    subject="user_no")
    result = engine.erase(plan, source)
    assert result.rows_updated == 3
    p64 = expect.pseudonym(KEY, str(INT_ERASED[0]), "int64")
    p32 = expect.pseudonym(KEY, str(INT_ERASED[0]), "int32")
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
    assert access.table_info(uri).schema == access.table_info(twin).schema


# --- what Spark wrote passes dsr's verification (access-layer reads, GE on pandas) ----------------------------


@pytest.mark.parametrize("strategy", ["anonymise", "delete"])
def test_what_sail_writes_passes_the_access_layer_checks(
    engine: Any, tmp_path: Path, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsr.core.policy import Policy
    from dsr.verify import checks as tablecheck
    from dsr.verify.ge import Validator

    uri = write_users(tmp_path / "users")
    masks = user_masks() if strategy == "anonymise" else {}
    result = engine.erase(*plan_and_source(engine, uri, ERASED, masks, erase=strategy))
    assert result.committed
    spec = dataclasses.replace(table_spec(uri, masks, strategy), name="users")
    policy = Policy(source="test", lake=str(tmp_path), control="_dsr", exports="exports",
                    pseudonym_key_env="DSR_TEST_KEY", export_before_erase=False, tables=(spec,))
    monkeypatch.setenv("DSR_TEST_KEY", KEY.decode())
    check = tablecheck.check_table(policy, spec, ERASED, reconcile=[dataclasses.asdict(result)])
    assert check.success, check.as_dict()
    suites = [s["suite"] for s in check.suites]
    assert {"dsr_erased_rows", "dsr_erased_absent", "dsr_read_sighted"} <= set(suites)
    assert f"dsr_reconcile[v6->v{result.version_after}]" in suites
    if strategy == "anonymise":
        assert len(suites) == 4 + len(masks)  # one mask suite per masked column

    # the same suite fails on the version before the erase: it sees the subjects' rows
    schema = access.table_info(uri, 6).schema
    old = pa.Table.from_batches(list(access.scan(uri, ["user_id"], version=6)),
                                schema=pa.schema([schema.field("user_id")])).to_pandas()
    bad = Validator.shared().validate("dsr_erased_absent", old, "pandas", subs={"$subject": "user_id"},
                                      params={"erased_subjects": ERASED})
    assert not bad.success and bad.unexpected == 12 and bad.rows_checked == 6 * 6 + 3


# --- privacy: statements, commit info, errors ----------------------------------------------------------------


def test_statements_and_commit_info_never_hold_subject_ids(engine: Any, tmp_path: Path) -> None:
    users = write_users(tmp_path / "users")
    orders = write_orders(tmp_path / "orders")
    engine.erase(*plan_and_source(engine, users, ERASED, user_masks()))
    engine.erase(*plan_and_source(engine, orders, [str(i) for i in INT_ERASED], {}, erase="delete",
                                   subject="user_no"))
    assert len(engine.statements) == 2
    assert all(s.startswith("MERGE INTO delta.`") and f"s.`{KEY_COLUMN}`" in s for s in engine.statements)
    commit_info = [json.dumps(h, default=str) for uri in (users, orders) for h in engine.history(uri)]
    assert_no_subject_text(engine.statements + commit_info, [*ERASED, *INT_ERASED])


def test_a_failed_merge_raises_without_subject_ids_and_leaves_the_table(engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    before = rows(uri)
    _, source = plan_and_source(engine, uri, ERASED, user_masks())
    bad = ErasePlan(uri=uri, subject="user_id", operation="update", updates={"no_such_column": "NULL"})
    with pytest.raises(RuntimeError, match=r"spark: MERGE into .* failed") as info:
        engine.erase(bad, source)
    assert_no_subject_text([str(info.value)], ERASED)
    assert version(uri) == 6
    assert rows(uri) == before
    assert engine.spark.conf.get("spark.databricks.delta.commitInfo.userMetadata", None) is None


def test_erase_rejects_a_strategy_it_cannot_do_before_any_write(engine: Any, tmp_path: Path) -> None:
    uri = write_orders(tmp_path / "orders")
    _, source = plan_and_source(engine, uri, [str(INT_ERASED[0])], {}, erase="delete", subject="user_no")
    with pytest.raises(ValueError, match="retain"):
        engine.erase(ErasePlan(uri=uri, subject="user_no", operation="retain"), source)
    with pytest.raises(ValueError, match="at least one column"):
        engine.erase(ErasePlan(uri=uri, subject="user_no", operation="update"), source)
    assert version(uri) == 2 and engine.statements == []
