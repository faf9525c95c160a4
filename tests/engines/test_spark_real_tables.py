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

import pyarrow as pa
import pytest

from dsr import steps
from dsr.core import control
from dsr.core.policy import check_against_lake, load_policy
from dsr.delta import access, commits
from dsr.engines.deltars import DeltaRsEngine
from dsr.engines.spark_reads import SparkReader
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


def _is_subject(case: rt.Case, value: Any) -> bool:
    return case.castable and value is not None and case.value is not None and value == case.value



def _suites(policy: Any, request_id: str) -> list[dict[str, Any]]:
    """The suites of the request's ``verified`` audit events."""
    from dsr.core import audit

    return [s for e in audit.events(policy, request_id=request_id) if e["event"] == "verified"
            for s in e["details"]["suites"]]


@pytest.mark.parametrize("strategy", ["delete", "anonymise"])
@pytest.mark.parametrize("source", TABLES, ids=[p.name for p in TABLES])
def test_a_real_table_the_gate_admits_for_sail_is_exported_erased_and_verified_on_the_spark_engine(
    tmp_path: Path, source: Path, strategy: str, spark_connect: Any
) -> None:
    """The whole run on the Spark engine (the cluster reads: export scan, erase planning, verification), checked
    with delta-rs: the export holds exactly the subject's rows, they are gone (or masked), every other row is
    unchanged, and verification kept the files' own evidence (``dsr_files_agree``) and it passed."""
    from dsr.core import gate
    from dsr.engines.spark import SparkEngine
    from tests.packages import document

    case = rt.case_for(source)
    assert case is not None
    if strategy == "anonymise" and not case.anonymise_masks:
        pytest.skip(f"{source.name}: no column type a subject mask can apply to")
    policy = load_policy(lakes.around(tmp_path, case, strategy).policy_path)
    check_against_lake(policy)
    table = policy.tables[0]
    engine = SparkEngine(spark_connect)
    verdict = gate.check_table(table, engine.support)
    if not verdict.ok:
        pytest.skip(f"{source.name} ({strategy}): refused for Sail by the gate: {verdict.reason}")
    before = lakes.rows(table.uri)
    before_info = access.table_info(table.uri)
    erase_id = control.submit(policy, "erase", case.subject_id)[0]
    export_id = control.submit(policy, "export", case.subject_id)[0]
    report = steps.run(policy, engine)
    erase, export = (control.list_requests(policy, ids=[rid])[0] for rid in (erase_id, export_id))
    assert report.exit_code == 0, report.as_dict()
    assert erase.status == "completed" and export.status == "completed", (erase.error, export.error)

    mine = [r for r in before if _is_subject(case, r[case.subject])]
    others = [r for r in before if not _is_subject(case, r[case.subject])]
    # the export holds exactly the subject's rows as delta-rs read them before
    exported = expect.exported(document(export.export_uri)["tables"][table.name], case.subject)
    assert expect.multiset(exported) == expect.multiset(mine)
    after = lakes.rows(table.uri)
    assert not [r for r in after if _is_subject(case, r[case.subject])]
    if strategy == "delete":
        assert expect.multiset(after) == expect.multiset(others)
    else:
        schema = before_info.schema
        masked = [{**r, **{c: rt.masked_value(m, case, schema.field(c).type) for c, m in case.anonymise_masks.items()}}
                  for r in mine]
        assert expect.multiset(after) == expect.multiset(others + masked)
    assert access.table_info(table.uri).fingerprint() == before_info.fingerprint()

    # verification ran the files' own evidence, and it agreed
    suites = _suites(policy, erase_id)
    agree = [s for s in suites if s["suite"] == "dsr_files_agree"]
    assert agree and all(s["success"] for s in agree), suites
    assert all(s["success"] for s in suites), suites
    if mine:  # the erase happened on the cluster's MERGE, and the reads ran there
        assert engine.statements and all(s.startswith("MERGE INTO delta.`") for s in engine.statements)
    assert isinstance(engine.reader, SparkReader) and engine.reader.jobs > 0


def _copy(tmp_path: Path, case: rt.Case) -> Path:
    policy_path = lakes.around(tmp_path, case, "delete").policy_path
    return policy_path


def test_sail_cannot_read_back_its_own_merge_of_a_variant_table_so_the_gate_refuses_it(
    tmp_path: Path, spark_connect: Any
) -> None:
    """Measured on Sail 0.7: after its own MERGE of ``spark-variant-checkpoint``, Sail's reader fails (Found unmasked
    nulls for non-nullable StructArray field "metadata"), so the erase could never be verified: the gate refuses a
    variant table for Sail before anything is written, naming the feature."""
    from dsr.core import gate
    from dsr.engines.spark import SparkEngine

    case = _vendored("spark-variant-checkpoint")
    policy = load_policy(lakes.around(tmp_path, case, "delete").policy_path)
    verdict = gate.check_table(policy.tables[0], SparkEngine(spark_connect).support)
    assert not verdict.ok and "variantType" in verdict.reason and "Sail" in verdict.reason, verdict.reason


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
    its result as erased — and verification fails the request: the commit's remove names no live file
    (``dsr_reconcile``), and the old file delta-rs still lists, read as plain Parquet, holds the erased row
    (``dsr_files_agree``: hits in the files, and more live rows than Spark's Delta reader returned)."""
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
    receipt = json.loads(_cli(policy_path, "receipt", rid, "--json").stdout)
    assert "stray_removes" in json.dumps(receipt)
    # the files' own evidence caught it too: the old file delta-rs lists as live still holds the erased row
    failed = [s["suite"] for s in receipt["tables"][case.name]["ge_suites"] if not s["success"]]
    assert "dsr_files_agree" in failed, (failed, req.error)
    assert "dsr_files_agree (expect_column_values_to_be_between[hits_in_files]" in (req.error or ""), req.error


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


def _blind_table(reader: SparkReader, uri: str, version: int | None = None) -> Any:
    """Spark's Delta reader as a reader that does not implement column mapping reads a column-mapped table: the
    live data files (the right ones, at the right version) as plain Parquet by the *logical* column names. The
    files hold ``col-<uuid>`` columns, so every column reads as NULL, with no error."""
    from pyspark.sql.pandas.types import from_arrow_schema

    info = access.table_info(uri, version)
    schema = pa.schema([pa.field(f.name, access.plain_type(f.type)) for f in info.schema])
    base = reader._path(uri).rstrip("/")
    paths = [f"{base}/{p}" for p in sorted(commits.live_files(uri, info.version))]
    return reader.spark.read.schema(from_arrow_schema(schema)).parquet(*paths)


def test_a_blind_delta_reader_on_the_cluster_never_reports_an_erasure_done(
    tmp_path: Path, spark_connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: Spark's Delta reader made blind to column mapping (it reads a column-mapped table's files
    by logical names, so the subject column reads as all NULL — what a reader without column mapping does, with
    no error). It then finds nobody to export or erase; verification must not take its word: the files, read
    by the subject column's physical name, still hold the subject (``dsr_files_agree``), and the log's
    statistics say the column holds values (``dsr_read_sighted``). The run does not report success."""
    from dsr.core import audit
    from dsr.engines.spark import SparkEngine

    case = _vendored("data-skipping-basic-stats-all-types-columnmapping-name")
    policy = load_policy(lakes.around(tmp_path, case, "delete").policy_path)
    table = policy.tables[0]
    assert access.table_info(table.uri).physical_name(case.subject) != case.subject  # column-mapped indeed
    before = lakes.rows(table.uri)
    mine = [r for r in before if r[case.subject] == case.value]
    assert mine
    monkeypatch.setattr(SparkReader, "_table", _blind_table)
    engine = SparkEngine(spark_connect)
    # the injected fault is real: the cluster's "Delta" read of the subject column is all NULL
    blind = engine.reader.subject_pass(table.uri, case.subject, None, version=access.table_info(table.uri).version,
                                       info=access.table_info(table.uri))
    assert blind.rows == len(before) and blind.non_null == 0

    erase_id = control.submit(policy, "erase", case.subject_id)[0]  # (an export beside it: the next test)
    report = steps.run(policy, engine)
    assert report.exit_code == 1, report.as_dict()
    erase = control.list_requests(policy, ids=[erase_id])[0]
    assert erase.status != "completed", erase
    failed = {s["suite"] for e in audit.events(policy, request_id=erase_id) if e["event"] == "verified"
              for s in e["details"]["suites"] if not s["success"]}
    assert {"dsr_files_agree", "dsr_read_sighted"} <= failed, failed
    assert "dsr_files_agree (expect_column_values_to_be_between[hits_in_files]" in " ".join(report.errors)
    # the subject's row is still there: nothing may say otherwise
    assert [r for r in lakes.rows(table.uri) if r[case.subject] == case.value] == mine


def test_a_blind_delta_reader_on_the_cluster_never_completes_an_export_as_no_data_found(
    tmp_path: Path, spark_connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same injected fault as above, for an export alone: the subject's row is in the table, so the export
    must hold it or fail — never complete empty. The files the log says may hold the subject, read as plain
    Parquet on the cluster by the physical column name, hold the row the blind reader missed: the table is
    refused for this run (retried), and once the reader sees again, the export completes with the row."""
    from dsr.engines.spark import SparkEngine
    from tests.packages import document

    case = _vendored("data-skipping-basic-stats-all-types-columnmapping-name")
    policy = load_policy(lakes.around(tmp_path, case, "delete").policy_path)
    table = policy.tables[0]
    mine = [r for r in lakes.rows(table.uri) if r[case.subject] == case.value]
    assert mine
    export_id = control.submit(policy, "export", case.subject_id)[0]
    with monkeypatch.context() as blind:
        blind.setattr(SparkReader, "_table", _blind_table)
        assert steps.run(policy, SparkEngine(spark_connect)).exit_code == 1
    export = control.list_requests(policy, ids=[export_id])[0]
    assert export.status != "completed" and export.export_uri is None, export
    assert "export incomplete" in (export.error or "") and "the Delta reader found 0 row(s)" in (export.error or "")
    assert steps.run(policy, SparkEngine(spark_connect)).exit_code == 0
    export = control.list_requests(policy, ids=[export_id])[0]
    assert export.status == "completed", export
    exported = expect.exported(document(export.export_uri)["tables"][table.name], case.subject)
    assert expect.multiset(exported) == expect.multiset(mine)


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
