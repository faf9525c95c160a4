"""Purge with the Spark engine: deletion vectors its erase wrote are rewritten away.

On Sail, the erase of a table with ``delta.enableDeletionVectors`` only marks the person's rows; the file keeps
them. Sail has no ``REORG TABLE ... APPLY (PURGE)``, so ``dsr purge --engine spark`` rewrites those files with
delta-rs; on delta-spark (classic, needs the io.delta jars from Maven) the REORG runs on the server.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests import bytescan, lakes
from tests.invoke import dsr

pytestmark = pytest.mark.spark

ERASED, KEPT = ["s-gone-01", "s-gone-02"], ["s-keep-03", "s-keep-04", "s-keep-05"]

POLICY = f"""\
lake: ./lake
exports: ./exports
pseudonym_key_env: {lakes.KEY_ENV}
purge_after_hours: 0
tables:
  - name: visits
    path: visits
    subject: user_id
    erase: delete
"""


def _write_with_deletion_vectors(spark: Any, path: Path, layout: str = "plain") -> None:
    """A table with deletion vectors on, written by Sail: plain, column-mapped (name mode), partitioned with a
    checkpoint (written by delta-rs after a few appends), or partitioned by a timestamp (whose partition values
    the purge's partition predicate cannot match as text: issue 21, its files kept their deletion vectors)."""
    import datetime as dt

    rows = [(sid, n, n % 2, dt.datetime(2021, 10, 1, 8, 9, 20 + n % 2)) for n, sid in enumerate(ERASED + KEPT + ERASED)]
    frame = spark.createDataFrame(rows, "user_id string, n int, g int, ts timestamp")
    writer = frame.write.format("delta").option("delta.enableDeletionVectors", "true")
    if layout == "column-mapped":
        writer = writer.option("delta.columnMapping.mode", "name")
    if layout == "partitioned":
        writer = writer.partitionBy("g")
    if layout == "timestamp-partitioned":
        writer = writer.partitionBy("ts")
    writer.save(str(path))
    if layout == "partitioned":
        from deltalake import DeltaTable

        for i in range(3):
            spark.createDataFrame([(KEPT[i], 100 + i, i % 2, dt.datetime(2021, 1, 1))],
                                  "user_id string, n int, g int, ts timestamp").write \
                .format("delta").mode("append").save(str(path))
        DeltaTable(str(path)).create_checkpoint()


@pytest.mark.parametrize("layout", ["plain", "column-mapped", "partitioned", "timestamp-partitioned"])
def test_sail_erase_marks_rows_and_the_purge_rewrites_them_away(
    tmp_path: Path, spark_connect: Any, spark_remote: str, layout: str
) -> None:
    root = tmp_path / "w"
    (root / "lake").mkdir(parents=True)
    _write_with_deletion_vectors(spark_connect, root / "lake" / "visits", layout)
    lake = lakes.Lake(root=root, policy_path=lakes.write_policy(root, POLICY),
                      env={lakes.KEY_ENV: lakes.KEY})
    ids = {sid: dsr("--policy", str(lake.policy_path), "request", "erase", sid, env=lake.env).stdout.strip()
           for sid in ERASED}
    engine = ["--engine", "spark", "--remote", spark_remote]
    if layout == "timestamp-partitioned":
        # dsr refuses Sail's MERGE on a timestamp-partitioned table: the people's rows were masked with deletion
        # vectors by another Spark job before (as Databricks does), and the erasure finds no live row
        quoted = ", ".join(f"'{sid}'" for sid in ERASED)
        spark_connect.sql(f"DELETE FROM delta.`{root / 'lake' / 'visits'}` WHERE user_id IN ({quoted})").collect()
        engine = []
    run = dsr("--policy", str(lake.policy_path), "run", *engine, env=lake.env)
    assert run.returncode == 0, run.stdout + run.stderr
    after_run = lakes.snapshot(root / "lake" / "visits")
    assert sorted({r["user_id"] for r in after_run}) == KEPT
    found = json.loads(dsr("--policy", str(lake.policy_path), "residue", "--json", env=lake.env).stdout)
    for r in found["requests"]:  # the live file still holds the rows its deletion vector masks
        assert r["tables"]["visits"]["data files"] == 2, r
    assert bytescan.scan([root / "lake"], ERASED)[f"{root / 'lake'}: parquet values"] > 0

    purge = dsr("--policy", str(lake.policy_path), "purge", "--engine", "spark", "--remote", spark_remote,
                env=lake.env)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert "with deletion vectors (delta-rs)" in purge.stdout  # Sail runs no REORG
    assert bytescan.scan([root / "lake", root / "exports"], ERASED) == Counter()
    assert lakes.snapshot(root / "lake" / "visits") == after_run
    assert spark_connect.read.format("delta").load(str(root / "lake" / "visits")).count() == len(after_run)
    assert set(ids) == set(ERASED)


@pytest.mark.classic_spark
def test_the_spark_engine_rewrites_with_reorg_where_the_server_has_it(tmp_path: Path) -> None:
    """delta-spark's REORG TABLE ... APPLY (PURGE), on a classic session: skipped where the jars cannot load."""
    from pyspark import SparkContext

    from dsr.delta import maintenance
    from dsr.engines.spark import SparkEngine
    from dsr.errors import InputError

    if SparkContext._active_spark_context is not None:
        pytest.skip("a classic SparkContext without the io.delta jars already runs in this process; "
                    "run `pytest -m classic_spark` on its own")
    try:
        engine = SparkEngine.connect()
    except InputError as exc:
        pytest.skip(f"classic Spark + delta-spark unavailable here: {exc}")
    try:
        assert engine.rewrites_deletion_vectors
        path = tmp_path / "visits"
        _write_with_deletion_vectors(engine.spark, path)
        engine.spark.sql(f"DELETE FROM delta.`{path}` WHERE user_id IN ('s-gone-01', 's-gone-02')").collect()
        version = lakes.version(path)
        assert version is not None
        done = maintenance.purge_through(str(path), version, rewrite=("REORG", engine.rewrite_deletion_vectors))
        assert done.dv_files and done.dv_rewrite == "REORG"
        assert any(s.startswith("REORG TABLE") for s in engine.statements)
        assert bytescan.scan([path], ERASED) == Counter()
        assert sorted(r["user_id"] for r in lakes.rows(path)) == KEPT
    finally:
        engine.close()
