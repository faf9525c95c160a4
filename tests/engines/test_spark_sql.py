"""The Spark engine's pure pieces: DataFrame transforms (chispa, on a classic local SparkSession without
Delta), the MERGE text, the mask expressions it runs, commit metrics, and error scrubbing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from dsr.delta.support import DELETE, UPDATE
from dsr.engines.base import KEY_COLUMN
from dsr.engines.spark_sql import (
    commit_metrics,
    error_for,
    find_commit,
    key_frame,
    merge_statement,
    normalise_commit,
)
from dsr.errors import ConflictError, scrub
from tests import expect

pytestmark = pytest.mark.spark

pa = pytest.importorskip("pyarrow")
chispa = pytest.importorskip("chispa")


# --- key_frame -----------------------------------------------------------------------------------------------


def test_keeps_the_key_and_pseudonym_types(spark_local: Any) -> None:
    source = pa.table({
        KEY_COLUMN: pa.array(["a", "b"], pa.large_string()),
        "__dsr_psn_string": pa.array(["psn_1", "psn_2"]),
        "__dsr_psn_int64": pa.array([-1, -2], pa.int64()),
        "__dsr_psn_int32": pa.array([-3, -4], pa.int32()),
    })
    expected = spark_local.createDataFrame(
        [("a", "psn_1", -1, -3), ("b", "psn_2", -2, -4)],
        f"{KEY_COLUMN} string, __dsr_psn_string string, __dsr_psn_int64 bigint, __dsr_psn_int32 int",
    )
    chispa.assert_df_equality(key_frame(spark_local, source), expected, ignore_row_order=True)


def test_builds_an_empty_frame_with_the_key_type(spark_local: Any) -> None:
    df = key_frame(spark_local, pa.table({KEY_COLUMN: pa.array([], pa.int32())}))
    expected = spark_local.createDataFrame([], f"{KEY_COLUMN} int")
    chispa.assert_df_equality(df, expected)


# --- the MERGE text and the mask expressions it runs ---------------------------------------------------------


def test_writes_a_merge_with_names_only() -> None:
    sql = merge_statement("/lake/ev`il", "__dsr_src_1", "user id", DELETE)
    assert sql == (
        "MERGE INTO delta.`/lake/ev``il` AS t USING `__dsr_src_1` AS s ON t.`user id` = s.`__dsr_key` "
        "WHEN MATCHED THEN DELETE"
    )
    sql = merge_statement("s3://b/users", "v", "user_id", UPDATE, {"email": "NULL", "a`b": "'x'"})
    assert sql.endswith("WHEN MATCHED THEN UPDATE SET t.`email` = NULL, t.`a``b` = 'x'")
    with pytest.raises(ValueError, match="retain"):
        merge_statement("/p", "v", "user_id", "retain")
    with pytest.raises(ValueError, match="at least one column"):
        merge_statement("/p", "v", "user_id", UPDATE, {})


def test_writes_merges_that_spark_parses(spark_local: Any) -> None:
    from dsr.core.masks import Mask, mask_sql

    field = pa.field("last_ip", pa.string())
    updates = {"last_ip": mask_sql(Mask("ipv4_24"), "last_ip", field, "spark"),
               "user_id": mask_sql(Mask("pseudonymise"), "user_id", pa.field("user_id", pa.string()), "spark")}
    parser = spark_local._jsparkSession.sessionState().sqlParser()
    for sql in (merge_statement("/tmp/x", "v", "user_id", DELETE),
                merge_statement("/tmp/x", "v", "user_id", UPDATE, updates)):
        assert "MergeIntoTable" in parser.parsePlan(sql).toString()


def test_computes_the_reference_masks_in_spark_sql(spark_local: Any) -> None:
    """The spark-dialect mask expressions, evaluated as the MERGE evaluates them (t = target row, s = the
    source row), equal README's masks (tests/expect.py)."""
    from dsr.core.masks import Mask, mask_sql

    key = b"k"
    schema = pa.schema([
        pa.field("user_id", pa.string()), pa.field("uid", pa.int64()), pa.field("email", pa.string()),
        pa.field("name", pa.string()), pa.field("born", pa.date32()),
        pa.field("seen", pa.timestamp("us", tz="UTC")), pa.field("ip", pa.string()),
    ])
    masks = {"user_id": Mask("pseudonymise"), "uid": Mask("pseudonymise"), "email": Mask("nullify"),
             "name": Mask("redact", "it's [erased] \\ ok"), "born": Mask("year"), "seen": Mask("month"),
             "ip": Mask("ipv4_24")}
    target = [
        {"user_id": "u1", "uid": 1, "email": "a@x", "name": "A", "born": dt.date(1990, 7, 9),
         "seen": dt.datetime(2024, 3, 31, 23, 59, tzinfo=dt.UTC), "ip": "10.1.2.3"},
        {"user_id": "u2", "uid": 2, "email": None, "name": None, "born": None, "seen": None, "ip": "::1"},
    ]
    t = spark_local.createDataFrame(pa.Table.from_pylist(target, schema=schema)).alias("t")
    s = key_frame(spark_local, pa.table({
        KEY_COLUMN: ["u1", "u2"],
        "__dsr_psn_string": [expect.pseudonym(key, "u1", "string"), expect.pseudonym(key, "u2", "string")],
        "__dsr_psn_int64": pa.array([expect.pseudonym(key, u, "int64") for u in ("u1", "u2")], pa.int64()),
    })).alias("s")
    # MERGE casts each assignment to the column's type; so does this projection
    exprs = [f"CAST({mask_sql(m, c, schema.field(c), 'spark')} AS {t.schema[c].dataType.simpleString()}) AS `{c}`"
             for c, m in masks.items()]
    got = t.join(s, t["user_id"] == s[KEY_COLUMN]).selectExpr(*exprs)
    expected_rows = [{c: expect.masked(m, row[c], key=key, subject_id=row["user_id"],
                                    kind=expect.form(schema.field(c).type)) for c, m in masks.items()}
                     for row in target]
    expected = spark_local.createDataFrame(pa.Table.from_pylist(expected_rows, schema=schema))
    chispa.assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


# --- commit metrics, finding our commit, scrubbing errors ----------------------------------------------------


def test_reads_merge_metrics_written_as_text_or_numbers() -> None:
    sail = {"operationMetrics": {"numTargetRowsDeleted": 3, "numTargetRowsUpdated": 0, "numTargetRowsCopied": 9,
                                 "numTargetFilesAdded": 1, "numTargetFilesRemoved": 2}}
    delta_spark = {"operationMetrics": {"numTargetRowsDeleted": "3", "numTargetRowsCopied": "9",
                                        "numTargetFilesAdded": "1", "numTargetFilesRemoved": "2"}}
    want = {"rows_deleted": 3, "rows_updated": 0, "rows_copied": 9, "files_added": 1, "files_removed": 2}
    assert commit_metrics(sail) == want
    assert commit_metrics(delta_spark) == want
    assert commit_metrics({}) == dict.fromkeys(want, 0)


def test_finds_its_own_merge_among_later_commits() -> None:
    pred = {"mergePredicate": f"t.user_id = s.{KEY_COLUMN}"}
    history = [
        {"version": 9, "operation": "MERGE", "operationParameters": pred},
        {"version": 8, "operation": "MERGE", "operationParameters": {"mergePredicate": "a.id = b.id"}},
        {"version": 7, "operation": "MERGE", "operationParameters": pred, "userMetadata": '{"dsr_commit": "tok"}'},
        {"version": 6, "operation": "WRITE"},
        {"version": 5, "operation": "MERGE", "operationParameters": pred},
    ]
    assert find_commit(history, 5, "tok")["version"] == 7  # tagged (delta-spark)
    assert find_commit(history, 5, "other")["version"] == 7  # earliest dsr MERGE after ours began (Sail)
    assert find_commit(history[:2], 7, "other")["version"] == 9
    assert find_commit(history[1:2], 7, "tok") is None  # someone else's MERGE
    assert find_commit([], 5, "tok") is None


def test_scrubs_subject_ids_from_error_messages() -> None:
    text = "cannot cast 'subj-7f3a' near 42 in row [subj-7f3a, 420, x42]"
    assert scrub(text, ["subj-7f3a", 42]) == "cannot cast '<subject>' near <subject> in row [<subject>, 420, x42]"
    err = error_for("MERGE into /l/t", ValueError("bad value subj-7f3a\nmore lines subj-7f3a"), ["subj-7f3a"])
    assert isinstance(err, RuntimeError) and str(err) == (
        "spark: MERGE into /l/t failed: ValueError: bad value <subject>")
    class ConcurrentAppendException(Exception):
        pass

    assert isinstance(error_for("MERGE", ConcurrentAppendException("x"), []), ConflictError)


def test_normalises_spark_commit_infos_to_the_form_delta_rs_reads() -> None:
    commit = {
        "version": 4, "operation": "MERGE",
        "userMetadata": '{"dsr.run_id": "run-1", "dsr.request_ids": "req-a,req-b", "version": 99}',
        "operationMetrics": {"numTargetRowsDeleted": "3", "numTargetFilesAdded": 1, "num_files": 2},
    }
    out = normalise_commit(commit)
    assert out["dsr.run_id"] == "run-1" and out["dsr.request_ids"] == "req-a,req-b"
    assert out["version"] == 4  # metadata never overrides the commit's own keys
    assert out["operationMetrics"] == {
        "numTargetRowsDeleted": "3", "num_target_rows_deleted": 3, "numTargetFilesAdded": 1,
        "num_target_files_added": 1, "num_files": 2,
    }
    assert normalise_commit({"version": 1, "userMetadata": "free text"}) == {"version": 1, "userMetadata": "free text"}
