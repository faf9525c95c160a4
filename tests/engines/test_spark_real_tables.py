"""Tables dsr did not write, and Spark (a Sail Spark Connect server) as writer or as the other reader.

- After the default engine erases a real table, Spark reads exactly the rows delta-rs reads (the table stays
  readable by both).
- Sail 0.7's MERGE on a timestamp-partitioned table writes remove paths escaped differently from the adds:
  Sail reads its own result as erased, every other reader sees the row back. The gate refuses such a table
  on Sail; and when the gate is told the server is delta-spark, verification (which reads with the access
  layer, not with Spark) catches the defect: ``dsr run --engine spark`` never reports success on it.
- On a table with deletion vectors, Sail only marks the rows deleted: the receipt says so, and never that a
  file was rewritten.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import control
from dsr.core.policy import check_against_lake, load_policy
from dsr.delta import access, commits
from dsr.engines.deltars import DeltaRsEngine
from tests import expect, lakes
from tests import real_tables as rt

pytestmark = [pytest.mark.spark]

TABLES = rt.table_dirs()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lakes.KEY_ENV, lakes.KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    monkeypatch.delenv("DSR_SPARK_SERVER", raising=False)


def _spark_rows(spark: Any, uri: str) -> list[dict[str, Any]]:
    return spark.read.format("delta").load(uri).toArrow().to_pylist()


def _cli(policy_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full = {**os.environ, lakes.KEY_ENV: lakes.KEY}
    full.pop("DSR_SPARK_SERVER", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "dsr.cli", "--policy", str(policy_path), *args],
                          capture_output=True, text=True, env=full, timeout=600)


def _vendored(name: str) -> rt.Case:
    case = rt.case_for(rt.VENDORED / name)
    assert case is not None
    return case


@pytest.mark.parametrize("source", TABLES, ids=[p.name for p in TABLES])
def test_after_a_default_engine_erase_spark_reads_what_delta_rs_reads(
    tmp_path: Path, source: Path, spark_connect: Any
) -> None:
    case = rt.case_for(source)
    assert case is not None
    policy = load_policy(lakes.around(tmp_path, case, "delete").policy_path)
    check_against_lake(policy)
    table = policy.tables[0]
    control.submit(policy, "erase", case.subject_id)
    report = steps.run(policy, DeltaRsEngine())
    if report.exit_code != 0:
        pytest.skip(f"{source.name}: refused on the default engine ({report.errors})")
    try:
        spark_rows = _spark_rows(spark_connect, table.uri)
    except Exception as exc:  # a type Sail cannot hand over as Arrow: compare counts
        first = str(exc).splitlines()[0][:200]
        count = spark_connect.read.format("delta").load(table.uri).count()
        assert count == len(lakes.rows(table.uri)), first
        return
    assert expect.multiset(spark_rows) == expect.multiset(lakes.rows(table.uri))


def _copy(tmp_path: Path, case: rt.Case) -> Path:
    policy_path = lakes.around(tmp_path, case, "delete").policy_path
    return policy_path


def test_sail_timestamp_partition_defect_is_refused_by_the_gate(tmp_path: Path, spark_remote: str) -> None:
    case = _vendored("kernel-timestamp-partition-col-ISO8601")
    policy_path = _copy(tmp_path, case)
    policy = load_policy(policy_path)
    table_dir = Path(policy.tables[0].uri)
    before = lakes.files(table_dir)
    check = _cli(policy_path, "check", "--remote", spark_remote)
    assert check.returncode == 1 and "timestampPartition" in check.stdout and "spark (Sail)" in check.stdout
    assert "delta-rs" in check.stdout  # which engine handles it
    rid = control.submit(policy, "erase", case.subject_id)[0]
    out = _cli(policy_path, "run", "--remote", spark_remote)
    assert out.returncode == 1, out.stdout + out.stderr
    req = control.list_requests(policy, ids=[rid])[0]
    assert req.status == "failed" and "timestampPartition" in (req.error or "") and "Sail" in (req.error or "")
    assert lakes.files(table_dir) == before  # nothing written
    shown = _cli(policy_path, "requests", "--status", "failed")
    assert "timestampPartition" in shown.stdout
    receipt = json.loads(_cli(policy_path, "receipt", rid, "--json").stdout)
    assert "timestampPartition" in receipt["tables"][case.name]["error"]


def test_sail_timestamp_partition_defect_is_caught_by_verification(tmp_path: Path, spark_remote: str) -> None:
    """Told the server is delta-spark, the gate lets the table through: Sail's MERGE reports success, Sail reads
    its result as erased — and the access layer's read-back fails the request."""
    case = _vendored("kernel-timestamp-partition-col-ISO8601")
    policy_path = _copy(tmp_path, case)
    policy = load_policy(policy_path)
    table = policy.tables[0]
    rid = control.submit(policy, "erase", case.subject_id)[0]
    out = _cli(policy_path, "run", "--remote", spark_remote, "--json", env={"DSR_SPARK_SERVER": "delta-spark"})
    assert out.returncode == 1, out.stdout + out.stderr
    req = control.list_requests(policy, ids=[rid])[0]
    assert req.status == "failed" and "verification failed" in (req.error or "")
    assert "dsr_reconcile" in (req.error or "") or "dsr_erased" in (req.error or "")
    # the defect itself: the commit happened, yet delta-rs (like every reader but Sail) still sees the row
    assert access.table_info(table.uri).version == 1
    assert [r for r in lakes.rows(table.uri) if r[case.subject] == case.value]
    assert "stray_removes" in json.dumps(json.loads(_cli(policy_path, "receipt", rid, "--json").stdout))


def test_sail_marks_deletion_vector_rows_and_the_receipt_says_so(tmp_path: Path, spark_remote: str) -> None:
    case = _vendored("log-replay-dv-key-cases")
    policy_path = _copy(tmp_path, case)
    policy = load_policy(policy_path)
    table = policy.tables[0]
    rid = control.submit(policy, "erase", case.subject_id)[0]
    out = _cli(policy_path, "run", "--remote", spark_remote)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not [r for r in lakes.rows(table.uri) if r[case.subject] == case.value]
    receipt = json.loads(_cli(policy_path, "receipt", rid, "--json").stdout)
    entry = receipt["tables"][case.name]
    assert entry["dv_marked"] == 1 and entry["files_rewritten"] == 0 and entry["ge_success"] is True
    text = _cli(policy_path, "receipt", rid).stdout
    assert "deletion vectors" in text and "still on disk" in text and "rewritten" not in text
    # and indeed: the live file still holds the row physically
    import pyarrow.parquet as pq

    live = commits.live_files(table.uri, access.table_info(table.uri).version)
    values = [v for p in live for v in pq.read_table(Path(table.uri) / p).column(0).to_pylist()]
    assert case.value in values


def test_sail_erases_a_column_mapping_table_and_delta_rs_confirms(tmp_path: Path, spark_remote: str) -> None:
    case = _vendored("data-skipping-basic-stats-all-types-columnmapping-name")
    policy_path = lakes.around(tmp_path, case, "anonymise").policy_path
    policy = load_policy(policy_path)
    table = policy.tables[0]
    before = access.table_info(table.uri).fingerprint()
    rid = control.submit(policy, "erase", case.subject_id)[0]
    out = _cli(policy_path, "run", "--remote", spark_remote)
    assert out.returncode == 0, out.stdout + out.stderr
    assert control.list_requests(policy, ids=[rid])[0].status == "completed"
    assert not [r for r in lakes.rows(table.uri) if r[case.subject] == case.value]
    assert access.table_info(table.uri).fingerprint() == before


def test_sail_refuses_a_table_listing_change_data_feed_switched_off_before_any_write(
    tmp_path: Path, spark_remote: str, spark_connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table listing changeDataFeed among its writer features with CDF switched off: Sail's MERGE refuses it
    at write time (``Unsupported table features required: [ChangeDataFeed]``, checked here on the server
    itself, so the declaration stays true); the gate refuses it for Sail before anything is written, naming the
    feature and who handles it; delta-rs erases it."""
    from dsr.engines.spark import SparkEngine
    from tests import spark_tables as st

    uri = st.write_cdf_listed_off(tmp_path / "direct")
    monkeypatch.delenv("DSR_SPARK_SERVER", raising=False)
    with SparkEngine(spark_connect) as engine:
        plan, source = st.plan_and_source(engine, uri, st.ERASED, {}, erase="delete")
        with pytest.raises(Exception, match="ChangeDataFeed") as refused:
            engine.erase(plan, source)
    assert not [s for s in st.ERASED if s in str(refused.value)]
    assert lakes.version(uri) == 3

    root = tmp_path / "lake"
    table = Path(st.write_cdf_listed_off(root / "lake" / "users"))
    policy_path = lakes.write_policy(root, "lake: ./lake\nexports: ./exports\ntables:\n  - name: users\n"
                                           "    path: users\n    subject: user_id\n    erase: delete\n")
    before = lakes.files(table)
    check = _cli(policy_path, "check", "--remote", spark_remote)
    assert check.returncode == 1 and "changeDataFeed (listed as a writer feature, though switched off)" in check.stdout
    assert "spark (Sail) cannot delete it; handled by delta-rs" in check.stdout, check.stdout
    policy = load_policy(policy_path)
    rid = control.submit(policy, "erase", st.ERASED[0])[0]
    out = _cli(policy_path, "run", "--remote", spark_remote)
    assert out.returncode == 1, out.stdout + out.stderr
    req = control.list_requests(policy, ids=[rid])[0]
    assert req.status == "failed" and "changeDataFeed" in (req.error or "") and "Sail" in (req.error or "")
    assert lakes.files(table) == before  # nothing written
    assert _cli(policy_path, "check").returncode == 0  # delta-rs handles it
    again = control.submit(policy, "erase", st.ERASED[0])[0]
    done = _cli(policy_path, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert control.list_requests(policy, ids=[again])[0].status == "completed"
    assert not [r for r in lakes.rows(table) if r["user_id"] == st.ERASED[0]]
