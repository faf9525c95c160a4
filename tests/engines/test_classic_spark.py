"""The Spark engine on a classic JVM SparkSession with delta-spark (no Spark Connect).

It needs the io.delta jars: ``SparkEngine.connect()`` has delta-spark's ``configure_spark_with_delta_pip`` fetch
them from Maven Central (or give them with ``spark-submit --packages`` / ``spark.jars``). Where they cannot be
loaded - this build network cannot reach Maven - every test here skips and says why. Run them where Maven is
reachable, on their own (a classic SparkContext started earlier in the process, e.g. by the chispa tests,
cannot load jars afterwards)::

    .venv/bin/python -m pytest -m classic_spark
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsr.delta import access, commits
from dsr.errors import InputError

pytestmark = [pytest.mark.spark, pytest.mark.classic_spark]

pa = pytest.importorskip("pyarrow")
pytest.importorskip("delta", reason="delta-spark is not installed")

from tests.spark_tables import (  # noqa: E402
    ERASED,
    assert_no_subject_text,
    masked_users,
    plan_and_source,
    rows,
    user_masks,
    write_users,
)


@pytest.fixture(scope="module")
def classic_engine() -> Iterator[Any]:
    from pyspark import SparkContext

    from dsr.engines.spark import SparkEngine

    already = SparkContext._active_spark_context is not None
    try:
        engine = SparkEngine.connect()
    except InputError as exc:
        if already:
            pytest.skip("a classic SparkContext without the io.delta jars already runs in this process; "
                        "run `pytest -m classic_spark` on its own")
        pytest.skip(f"classic Spark + delta-spark unavailable here: {exc}")
    assert not engine.is_connect
    yield engine
    engine.close()


def test_classic_engine_is_delta_spark(classic_engine: Any) -> None:
    import os

    from dsr.delta.support import DELTA_SPARK, ENGINE_SUPPORT

    if os.environ.get("DSR_SPARK_SERVER"):
        pytest.skip("DSR_SPARK_SERVER overrides the detection of a classic session")
    assert (classic_engine.name, classic_engine.dialect) == ("spark", "spark")
    assert classic_engine.server == "delta-spark"
    assert classic_engine.support is ENGINE_SUPPORT["spark:delta-spark"] is DELTA_SPARK


def test_classic_delete_records_metrics_and_commit_metadata(classic_engine: Any, tmp_path: Path) -> None:
    uri = write_users(tmp_path / "users")
    before = rows(uri)
    before_info = access.table_info(uri)
    plan, source = plan_and_source(classic_engine, uri, ERASED, {}, erase="delete")
    result = classic_engine.erase(plan, source)
    assert rows(uri) == [r for r in before if r["user_id"] not in ERASED]
    assert (result.version_before, result.version_after, result.rows_deleted) == (6, 7, 12)
    # what delta-spark wrote, read back by the access layer
    assert list(access.scan(uri, ["user_id"], where_in=("user_id", pa.array(ERASED)))) == []
    assert access.count_rows(uri, version=6) - result.rows_deleted == access.count_rows(uri)
    assert access.table_info(uri).fingerprint() == before_info.fingerprint()
    assert {p for p, _ in commits.commit_actions(uri, 7).removes} <= commits.live_files(uri, 6)
    commit = classic_engine.history(uri, 1)[0]
    meta = json.loads(commit["userMetadata"])  # delta-spark honours commitInfo.userMetadata
    assert meta["run_id"] == "run-test" and meta["request_ids"] == "req-0,req-1"
    assert_no_subject_text([*classic_engine.statements, json.dumps(commit, default=str)], ERASED)


def test_classic_anonymise_writes_the_reference_masks(classic_engine: Any, tmp_path: Path) -> None:

    uri = write_users(tmp_path / "users")
    schema = access.table_info(uri).schema
    before = rows(uri)
    masks = user_masks()
    result = classic_engine.erase(*plan_and_source(classic_engine, uri, ERASED, masks))
    assert result.rows_updated == 12
    expected = masked_users(before, masks, schema)
    assert rows(uri) == sorted(expected, key=lambda r: repr(sorted(r.items())))
    assert access.table_info(uri).schema == schema
