"""jobs/process.py end to end: the same lake and requests through the default engine (delta-rs) and through
the Spark engine (Spark Connect to a Sail server) give the same tables, exports and receipt row counts."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import lakes
from tests.packages import document

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("events", "users", "sales/orders", "consents", "geo_lookup")


def _process_module() -> Any:
    spec = importlib.util.spec_from_file_location("dsr_jobs_process", ROOT / "jobs" / "process.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _process_main() -> Any:
    return _process_module().main


@pytest.mark.parametrize(("argv", "expected"), [
    ([], ["run", "--engine", "spark"]),
    (["--policy", "p.yml", "--remote", "sc://h:1", "--run-id", "af_x", "--json"],
     ["--policy", "p.yml", "run", "--engine", "spark", "--remote", "sc://h:1", "--run-id", "af_x", "--json"]),
    (["--remote", ""], ["run", "--engine", "spark"]),  # the spark-submit DAG's empty remote: classic Spark
])
def test_process_py_is_dsr_run_on_spark(argv: list[str], expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.delenv("PYSPARK_REMOTE_INIT_CONF_LEN", raising=False)
    assert _process_module().dsr_args(argv) == expected


def _lake_with_requests(root: Path) -> lakes.Lake:
    from dsr.cli.main import main as dsr

    lake = lakes.busy(root)
    for kind, subjects in (("erase", lakes.ERASE), ("export", lakes.EXPORT)):
        for s in subjects:
            assert dsr(["--policy", str(lake.policy_path), "request", kind, s]) == 0
    return lake


def _exports(lake: lakes.Lake) -> dict[str, dict[str, list[str]]]:
    """subject -> table -> sorted rows as JSON (the engines may return a table's rows in another order)."""
    out = {}
    for doc_path in lake.exports.glob("*.zip"):
        doc = document(str(doc_path))
        out[doc["subject_id"]] = {t: sorted(json.dumps(r, sort_keys=True) for r in rows)
                                  for t, rows in doc["tables"].items()}
    return out


def _receipt_counts(lake: lakes.Lake) -> dict[str, dict[str, tuple[Any, ...]]]:
    from dsr.core import control
    from dsr.core.policy import load_policy

    policy = load_policy(lake.policy_path)
    out = {}
    for r in control.list_requests(policy):
        assert r.status == "completed", r.status
        if r.kind == "erase":
            tables = r.result_json()["tables"]
            out[r.subject_id] = {t: (d.get("rows"), d.get("rows_deleted"), d.get("rows_updated"),
                                     d.get("version_before"), d.get("version_after")) for t, d in tables.items()}
    return out


@pytest.fixture
def lake_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSR_PSEUDONYM_KEY", lakes.KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)


def test_spark_and_delta_rs_runs_end_in_the_same_state(
    tmp_path: Path, spark_remote: str, lake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from dsr import steps
    from dsr.core.policy import load_policy
    from dsr.engines import make_engine

    by_rs = _lake_with_requests(tmp_path / "delta-rs")
    by_spark = _lake_with_requests(tmp_path / "spark")

    engine = make_engine("delta-rs")
    assert steps.run(load_policy(by_rs.policy_path), engine).exit_code == 0
    engine.close()
    capsys.readouterr()
    code = _process_main()(["--policy", str(by_spark.policy_path), "--remote", spark_remote, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["engine"] == "spark" and report["errors"] == [], report
    assert report["summary"]["failed"] == 0

    for table in TABLES:
        assert lakes.snapshot(by_spark.lake / table) == lakes.snapshot(by_rs.lake / table), table
    assert _exports(by_spark) == _exports(by_rs)
    assert len(_exports(by_spark)) == len(lakes.EXPORT)
    assert _receipt_counts(by_spark) == _receipt_counts(by_rs)


def test_dsr_run_engine_spark_remote_ends_in_the_default_engines_state(
    tmp_path: Path, spark_remote: str, lake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's own words: `dsr run --engine spark --remote sc://...` against Sail = the default engine."""
    from dsr.cli.main import main as dsr

    by_rs = _lake_with_requests(tmp_path / "delta-rs")
    by_cli = _lake_with_requests(tmp_path / "spark-cli")
    assert dsr(["--policy", str(by_rs.policy_path), "run", "--json"]) == 0
    capsys.readouterr()
    code = dsr(["--policy", str(by_cli.policy_path), "run", "--engine", "spark", "--remote", spark_remote, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["engine"] == "spark" and report["summary"]["completed"] == 8, report
    for table in TABLES:
        assert lakes.snapshot(by_cli.lake / table) == lakes.snapshot(by_rs.lake / table), table
    assert _exports(by_cli) == _exports(by_rs)
    assert _receipt_counts(by_cli) == _receipt_counts(by_rs)
    assert dsr(["--policy", str(by_cli.policy_path), "verify", "--engine", "spark", "--remote", spark_remote]) == 0
    # an erased id reappears: the Spark verification (a join, no literals) finds it and names the table
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    events = str(by_cli.lake / "events")
    row = pa.table({"event_id": [10**9], "user_id": ["1007"], "event_date": ["2026-01-01"], "page": ["/"],
                    "payload": [b"x"]}, schema=pa.schema(DeltaTable(events).schema().to_arrow()))
    write_deltalake(events, row, mode="append", partition_by=["event_date"])
    capsys.readouterr()
    assert dsr(["--policy", str(by_cli.policy_path), "verify", "--engine", "spark", "--remote", spark_remote]) == 1
    out = capsys.readouterr().out
    assert "events" in out and "FAILED" in out and "1007" not in out


def test_a_bad_policy_exits_2_with_one_line_and_builds_no_engine(
    tmp_path: Path, lake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "dsr.yml"
    policy.write_text("lake: ./lake\ntables: []\nnonsense: 1\n", encoding="utf-8")
    assert _process_main()(["--policy", str(policy), "--remote", "sc://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsr: error: ") and "\n" not in err


def test_a_malformed_run_id_exits_2_before_anything_is_written(
    tmp_path: Path, lake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = _lake_with_requests(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert _process_main()(["--policy", str(lake.policy_path), "--remote", "sc://127.0.0.1:1",
                            "--run-id", "../x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsr: error: run id") and "\n" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_an_unreachable_remote_exits_2(tmp_path: Path, lake_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    lake = lakes.busy(tmp_path)
    assert _process_main()(["--policy", str(lake.policy_path), "--remote", "sc://127.0.0.1:1"]) == 2
    assert "cannot reach the Spark Connect server" in capsys.readouterr().err


@pytest.mark.slow
def test_spark_submit_runs_the_batch_against_a_connect_server(
    tmp_path: Path, spark_remote: str, lake_env: None
) -> None:
    submit = shutil.which("spark-submit", path=str(Path(sys.executable).parent))
    if submit is None or shutil.which("java") is None:
        pytest.skip("spark-submit (pyspark) or java not found")
    lake = _lake_with_requests(tmp_path)
    env = {**os.environ, **lake.env, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("DSR_POLICY")
    done = subprocess.run(
        [submit, "--remote", spark_remote, str(ROOT / "jobs" / "process.py"), "--policy", str(lake.policy_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(spark):" in done.stdout and ", 0 failed" in done.stdout
    assert len(_receipt_counts(lake)) == len(lakes.ERASE)  # every request completed
    # the job read on the cluster: every verification carries the files' evidence, checked on the cluster
    from dsr.core import audit_read

    verified = [e for e in audit_read.events(lake.policy()) if e["event"] == "verified"]
    assert verified and all(any(s["suite"] == "dsr_files_agree" and s["success"] for s in e["details"]["suites"])
                            for e in verified)
    assert all(any("on the cluster" in n for n in e["details"]["notes"]) for e in verified)
