"""``make bench-quick`` as a smoke test: the comparative benchmark runs its competitors and writes its JSON.
No time is asserted (speed is measured by the benchmark, never by a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "compare.py"


def test_the_quick_comparative_bench_runs_every_kind_of_competitor(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--layouts", "clustered", "--k", "1", "--out", str(tmp_path),
         "--competitors", "dsr_erase", "delete_in", "loop_delete", "merge_alone", "bound", "dsr_export",
         "files_floor", "export_bound"],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = tmp_path.glob("compare-*.json")
    result = json.loads(path.read_text(encoding="utf-8"))
    (case,) = result["cases"]
    assert (case["layout"], case["k"]) == ("clustered", 1)
    assert set(case["results"]) == {"dsr_erase", "delete_in", "loop_delete", "merge_alone", "bound", "dsr_export",
                                    "files_floor", "export_bound"}
    assert not [r for r in case["results"].values() if "error" in r]
    # dsr rewrites exactly the files that hold the subject's rows, as a DELETE does
    assert case["results"]["dsr_erase"]["files_removed"] == case["files_holding_rows"] == \
        case["results"]["delete_in"]["files_removed"]
    assert case["ratios"]["dsr_erase/bound"] is not None and result["ge_import"]["seconds"] > 0
    assert "dsr_erase/bound" in done.stdout and "GE import" in done.stdout
    # the targets this case can judge, each with its measured breakdown (met or not: no time is asserted)
    judged = {v["target"]: v for v in result["targets"]}
    assert {"erase step <= 2x bound", "export <= 1.5x one filtered scan",
            "erase step peak RSS <= 1.5x the MERGE alone"} <= set(judged)
    assert "MERGE" in judged["erase step <= 2x bound"]["breakdown"] and "targets:" in done.stdout


def test_the_quick_history_bench_measures_bookkeeping_on_a_filed_history(tmp_path: Path) -> None:
    """``bench/history.py --quick``: a history filed in bulk through dsr's own chain, then intake, a run and the
    daily views on it. No time is asserted; what is asserted is the run's way of reading: never the whole
    audit log."""
    done = subprocess.run([sys.executable, str(BENCH.parent / "history.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = tmp_path.glob("history-*.json")
    result = json.loads(path.read_text(encoding="utf-8"))
    assert (result["requests"], result["events"]) == (2_000, 10_000)
    for case in ("empty", "history"):
        assert {"submit_seconds", "run_bookkeeping_seconds", "status_seconds"} <= set(result[case])
    reads = result["history"]["run_reads_of_dsr_tables"]
    assert reads.get("audit filtered", 0) > 0 and "audit full" not in reads
    assert "control + audit" in done.stdout


def test_the_quick_flat_bench_measures_memory_at_two_table_sizes(tmp_path: Path) -> None:
    """``bench/flat.py --quick``: one subject erased from a clustered table at two sizes with the same file size,
    dsr's erase step beside the MERGE alone, and the verdict on dsr's excess (no time or memory asserted)."""
    done = subprocess.run([sys.executable, str(BENCH.parent / "flat.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = tmp_path.glob("flat-*.json")
    result = json.loads(path.read_text(encoding="utf-8"))
    assert [(s["rows"], s["files"]) for s in result["sizes"]] == [(50_000, 20), (500_000, 200)]
    assert all("error" not in s[n] for s in result["sizes"] for n in ("dsr_erase", "merge_alone"))
    assert "dsr's excess over the MERGE alone" in result["verdict"]["breakdown"] and "flat in table size" in done.stdout


@pytest.mark.spark
def test_the_quick_spark_scale_bench_measures_the_dsr_process_beside_a_sail_server(tmp_path: Path) -> None:
    """``bench/spark_scale.py --quick``: the dsr process on Spark at two table sizes, a Sail server in its own
    process; its peak RSS, the data files and bytes it read (counted by strace), the run beside the MERGE alone,
    and the verdicts printed met or NOT MET. No time or memory is asserted, nor whether a target is met."""
    from tests.opens import require_strace

    require_strace()
    done = subprocess.run([sys.executable, str(BENCH.parent / "spark_scale.py"), "--quick", "--k", "1",
                           "--data", str(tmp_path / "data"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = tmp_path.glob("spark-scale-*.json")
    result = json.loads(path.read_text(encoding="utf-8"))
    assert [(s["rows"], s["files"], s["files_live"]) for s in result["sizes"]] == [(50_000, 20, 20),
                                                                                   (500_000, 200, 200)]
    for size in result["sizes"]:
        assert [(c["kind"], c["k"]) for c in size["cases"]] == [("export", 1), ("erase", 1)]
        for case in size["cases"]:
            assert "error" not in case["run"] and "error" not in case["reads"], case
            assert case["run"]["peak_rss_mb"] > 0 and case["run"]["exit_code"] == 0
            # the counter saw the run read the table's log, and the erase's commit add the file it rewrote
            assert case["reads"]["log_bytes_read"] > 0 and case["files_holding_rows"] == 1
            assert (case["reads"]["files_added_by_erase"] > 0) == (case["kind"] == "erase")
        (erase,) = [c for c in size["cases"] if c["kind"] == "erase"]
        assert erase["merge_alone"]["seconds"] > 0 and erase["merge_alone"]["files_removed"] == 1
    judged = {v["target"].split(" from ")[0].split(" at ")[0] for v in result["targets"]}
    assert judged == {"dsr process peak RSS grows <= 10%", "(erase run - GE import) <= 2x the Sail MERGE alone",
                      "the dsr process opens no data file but those its erase commit added"}
    met = sum(v["met"] for v in result["targets"])
    assert f"targets: {met} of {len(result['targets'])} met" in done.stdout
