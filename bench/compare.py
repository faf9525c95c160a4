"""Comparative benchmark (``make bench``; ``make bench-quick`` for a small size): dsr against its competitors.

A generated events table (``--rows``, 100 files over 10 day partitions), in two layouts: *random* (every file
holds every kind of subject) and *clustered* (rows sorted by subject id, so a subject's rows sit in one or two
files). For each layout and each K (subjects erased in one batch), every competitor runs in its own process
(``bench/compete.py``) on a fresh copy of the table, ``--reps`` times (median):

* ``dsr_erase`` dsr's erase step; ``dsr_verify`` its verify step; ``dsr_run`` the whole ``dsr run`` (claim,
  erase, verify, complete; the Great Expectations import included); ``dsr_export`` an export of the K subjects;
* ``loop_delete`` one delta-rs DELETE per subject (at most ``--loop-cap``, the rest extrapolated: stated);
  ``delete_in`` one DELETE with an IN list; ``full_rewrite`` read, filter, overwrite; ``sail_merge`` MERGE on a
  Sail Spark Connect server; ``bound`` pyarrow reading exactly the files that hold the rows, filtering, writing
  them back (no commit, no check: the floor); ``merge_alone`` the MERGE dsr issues, alone (delta-rs, streamed,
  restricted to the partitions that hold rows); ``export_bound`` one filtered scan; ``files_floor`` K small
  files created and renamed into place (the floor of one package per request on this file system);
* ``ge_import`` importing Great Expectations and making its context, on its own (a floor of GE itself);
* ``dsr_run_spark``: the whole ``dsr run --engine spark`` against a Sail Spark Connect server, set beside
  ``sail_merge`` on the same kind of server.

Prints a table of medians, the ratios dsr / competitor and dsr / bound, files removed vs files holding rows,
peak RSS per competitor, then issue 13's targets judged on the result (``bench/targets.py``: met or not, and
for each the measured breakdown of where the time goes); writes JSON to ``bench/out/compare-<time>.json``.
Times are measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from targets import print_verdicts, verdicts  # noqa: E402  (bench/ is not a package)

ERASERS = ("dsr_erase", "dsr_run", "loop_delete", "delete_in", "full_rewrite", "sail_merge", "merge_alone", "bound")


def build(base: Path, rows: int, users: int, files: int, days: int, clustered: bool, seed: int = 7) -> None:
    """The events table: ``files`` files over ``days`` day partitions; ids random, or sorted (clustered)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    rng = random.Random(seed)
    per_file = max(1, rows // files)
    ids = sorted(f"u{rng.randrange(users):07d}" for _ in range(per_file * files)) if clustered else None
    for n in range(files):
        chunk = ids[n * per_file:(n + 1) * per_file] if ids else [f"u{rng.randrange(users):07d}"
                                                                  for _ in range(per_file)]
        day = (dt.date(2026, 1, 1) + dt.timedelta(days=n * days // files)).isoformat()
        write_deltalake(str(base), pa.table({
            "user_id": chunk, "event_date": [day] * per_file,
            "page": [("/", "/cart", "/help", "/search")[i % 4] for i in range(per_file)],
            "value": [rng.random() for _ in range(per_file)],
        }), mode="append", partition_by=["event_date"])


def holding(base: Path, ids: list[str]) -> list[str]:
    """The live files of the table that hold rows of the ids (what the bound reads)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    keys = pa.array(ids)
    paths = pa.table(DeltaTable(str(base)).get_add_actions(flatten=True)).column("path").to_pylist()
    from urllib.parse import unquote

    return [p for p in paths if pc.any(pc.is_in(pq.read_table(base / unquote(p), columns=["user_id"])["user_id"],
                                                 keys)).as_py()]


def run_one(name: str, base: Path | None, job: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """One competitor in its own process on a fresh copy of the table (``base`` None: it needs none)."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    table = work / "lake" / "events"
    if base is not None:
        shutil.copytree(base, table)
    (work / "job.json").write_text(json.dumps({**job, "table": str(table)}), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run([sys.executable, str(HERE / "compete.py"), name, str(work)], capture_output=True,
                          text=True, env=env, timeout=7200)
    shutil.rmtree(work, ignore_errors=True)
    if done.returncode != 0:
        return {"name": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sorted((r for r in results if "error" not in r), key=lambda r: r["seconds"])
    if not ok:
        return results[0]
    out = dict(ok[len(ok) // 2])  # the median repetition: its breakdown adds up to its time
    out["seconds"] = round(statistics.median(r["seconds"] for r in ok), 3)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    return out


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or "error" in a or "error" in b or not b.get("seconds"):
        return None
    return round(a["seconds"] / b["seconds"], 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--large", action="store_true", help="20,000,000 rows")
    ap.add_argument("--quick", action="store_true", help="a small run for CI and a first look (under a minute)")
    ap.add_argument("--k", type=int, nargs="+", default=None,
                    help="subjects per batch (default 1 100 1000 10000; --quick: 1 100)")
    ap.add_argument("--layouts", nargs="+", default=["random", "clustered"], choices=["random", "clustered"])
    ap.add_argument("--competitors", nargs="+", default=None,
                    help="default: all (--quick: all but dsr_run_spark, to stay under a minute)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--loop-cap", type=int, default=25, help="per-subject DELETEs measured; the rest extrapolated")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    if args.large:
        args.rows = 20_000_000
    if args.quick:
        args.rows, args.reps, args.files, args.loop_cap = 50_000, 1, 20, 5
    args.k = args.k or ([1, 100] if args.quick else [1, 100, 1000, 10000])
    args.competitors = args.competitors or [*ERASERS, "dsr_verify", "dsr_export", "export_bound", "files_floor",
                                            *([] if args.quick else ["dsr_run_spark"])]
    users = max(1000, args.rows // 20)
    result: dict[str, Any] = {
        "at": dt.datetime.now(dt.UTC).isoformat(), "machine": _machine(), "params": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "cases": []}
    with tempfile.TemporaryDirectory(prefix="dsr-compare-") as tmp:
        scratch = Path(tmp)
        result["ge_import"] = _median([run_one("ge_import", None, {"ids": []}, scratch) for _ in range(args.reps)])
        for layout in args.layouts:
            base = scratch / f"base-{layout}"
            build(base, args.rows, users, args.files, 10, layout == "clustered")
            rng = random.Random(11)
            for k in args.k:
                ids = sorted({f"u{rng.randrange(users):07d}" for _ in range(k * 2)})[:k]
                job = {"ids": ids, "holding": holding(base, ids), "loop_cap": args.loop_cap}
                case: dict[str, Any] = {"layout": layout, "k": k, "files_holding_rows": len(job["holding"]),
                                        "files_live": args.files, "results": {}}
                for name in args.competitors:
                    case["results"][name] = _median([run_one(name, base, job, scratch) for _ in range(args.reps)])
                case["ratios"] = _ratios(case["results"], result["ge_import"])
                result["cases"].append(case)
                _print_case(case)
    result["targets"] = verdicts(result)
    print_verdicts(result["targets"])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compare-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"GE import and context: {result['ge_import'].get('seconds')} s (a floor of GE itself)")
    print(f"written to {path}")
    return 0


def _ratios(r: dict[str, dict[str, Any]], ge: dict[str, Any]) -> dict[str, float | None]:
    erase = r.get("dsr_erase")
    out = {f"dsr_erase/{n}": _ratio(erase, r.get(n)) for n in ERASERS if n not in ("dsr_erase", "dsr_run")}
    out["dsr_export/export_bound"] = _ratio(r.get("dsr_export"), r.get("export_bound"))
    export, floor = r.get("dsr_export", {}), r.get("export_bound", {})
    if "scan_seconds" in export and floor.get("seconds"):
        out["export scan/export_bound"] = round(export["scan_seconds"] / floor["seconds"], 2)
    run = r.get("dsr_run")
    if run and erase and "error" not in run and "error" not in erase and ge.get("seconds") is not None:
        paid = run.get("ge_seconds", ge["seconds"])  # the import as the run paid it, else measured alone
        out["(dsr_run - ge_import)/dsr_erase"] = round((run["seconds"] - paid) / erase["seconds"], 2)
        out["dsr_run/dsr_erase"] = round(run["seconds"] / erase["seconds"], 2)
    spark, merge = r.get("dsr_run_spark"), r.get("sail_merge")
    if spark and merge and "error" not in spark and merge.get("seconds"):
        out["(dsr_run_spark - ge_import)/sail_merge"] = round(
            (spark["seconds"] - spark.get("ge_seconds", 0.0)) / merge["seconds"], 2)
    if erase and "merge_seconds" in erase and r.get("bound", {}).get("seconds"):
        out["merge/bound"] = round(erase["merge_seconds"] / r["bound"]["seconds"], 2)
    return out


def _print_case(case: dict[str, Any]) -> None:
    print(f"\n{case['layout']}, K={case['k']}: {case['files_holding_rows']} of {case['files_live']} files hold rows")
    for name, r in case["results"].items():
        if "error" in r:
            print(f"  {name:14} ERROR {r['error']}")
            continue
        touched = f"  files removed {r['files_removed']}" if "files_removed" in r else ""
        extra = f"  (extrapolated from {r['measured']})" if r.get("extrapolated") else ""
        if "merge_seconds" in r:
            extra += f"  [MERGE {r['merge_seconds']} s, pre-count and bookkeeping {r['rest_seconds']} s]"
        if "ge_seconds" in r:
            extra += f"  [of which GE import and context {r['ge_seconds']} s]"
        if "steps" in r:
            extra += "  [" + ", ".join(f"{k} {v}" for k, v in r["steps"].items()) + "]"
        if "packages_seconds" in r:
            extra += f"  [scan {r['scan_seconds']} s, one package per request {r['packages_seconds']} s]"
        print(f"  {name:14} {r['seconds']:9.3f} s  {r['peak_rss_mb']:8.1f} MB{touched}{extra}")
    print("  ratios: " + ", ".join(f"{k} {v}" for k, v in case["ratios"].items() if v is not None))


def _machine() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


if __name__ == "__main__":
    raise SystemExit(main())
