"""The dsr process on Spark against table size (``make bench-spark``; part of ``make bench``; ``--quick`` small).

Issue 22: on Spark the cluster reads the data; the dsr process holds only logs and results, so its memory and
the bytes it reads do not grow with the table. A table clustered by subject (``compare.build``: 10 day
partitions, a subject's rows in one file) of ``--rows`` rows in ``--files`` files, then ten times both (the same
file size); for each size, each K (``--k``) and each kind of request (export, erase), the K requests filed by
this process, then ``dsr run --engine spark --remote`` in its own process (``compete.py dsr_run_remote``: the CLI's
``main``, the Great Expectations import timed where the run pays it) against one Sail Spark Connect server in
another process (``tests/sail_server.py``), each on a fresh copy of the table:

* the *timed* run: the run's wall time (inside the process), the GE import it paid, the dsr process's peak RSS
  (its VmHWM: its own, never the server's nor this driver's), ``--reps`` times (median time, highest peak);
* the *traced* run, on another copy, under ``strace -f`` (``tests/opens.py``; not timed: tracing slows it): the
  data files of the table the process opened, the bytes it read from them (the ``read``/``pread64`` family on
  their descriptors, plus any ``mmap`` of them), the bytes it read from the table's log, and which of those files
  the run's own erase commit added (read from its log entry: the only ones it may read on Spark);
* per size and K, the *MERGE alone*: the MERGE dsr's erase issues, through a Spark Connect session on the same
  server, on a fresh copy (``compete.py sail_merge_remote``).

The issue's targets, judged on what was measured (met / NOT MET, each with its numbers): the dsr process's peak
RSS grows at most 10% from the small table to the large (each kind and K); at the large size and the largest K,
the erase run minus the GE import is at most 2x the Sail MERGE alone; and invariant 12: the dsr process opens
no data file but those its erase commit added. Tables are cached under ``--data`` (``bench/data/``; 20M rows
take minutes to write); copies hard-link the data files (no writer changes a data file in place). Writes JSON to
``bench/out/spark-scale-<time>.json``. Measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # tests/opens.py, tests/sail_server.py
from compare import _machine, build, holding  # noqa: E402  (bench/ is not a package)
from compete import POLICY  # noqa: E402
from targets import print_verdicts  # noqa: E402

from tests.opens import commit_adds, strace, traced  # noqa: E402
from tests.sail_server import sail_server  # noqa: E402

KINDS = ("export", "erase")
RSS_GROWTH = 0.10
"""The dsr process's peak RSS may grow by this much from the small table to the large (issue 22)."""
MERGE_RATIO = 2.0
"""At the large size, the erase run minus the GE import may take this many times the Sail MERGE alone."""
KEY = "bench-key-0123456789abcdef"
_BUILDER = 1  # bump when compare.build changes what it writes: the cached tables are rebuilt


# --- the tables: built once, cached, copied per run ---------------------------------------------------------


def cached_table(data: Path, rows: int, files: int) -> Path:
    """The clustered table of ``rows`` rows in ``files`` files under ``data``, built when missing (into a scratch
    folder, renamed into place when whole)."""
    users = max(1000, rows // 20)
    spec = {"rows": rows, "files": files, "users": users, "days": 10, "layout": "clustered", "builder": _BUILDER}
    final = data / f"clustered-{rows}-{files}"
    marker = final / "bench.json"
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == spec:
        return final / "events"
    data.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(final, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=data))
    t = time.perf_counter()
    print(f"building {rows:,} rows in {files} files (cached in {final}) ...", flush=True)
    build(scratch / "events", rows, users, files, 10, clustered=True)
    (scratch / "bench.json").write_text(json.dumps(spec) + "\n", encoding="utf-8")
    scratch.rename(final)
    print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    return final / "events"


def _copy(base: Path, table: Path) -> None:
    """A copy of the table whose data files are hard links (writers only add files), its log copied."""
    def link(src: str, dst: str) -> object:
        if src.endswith(".parquet") and "_delta_log" not in Path(src).parts:
            os.link(src, dst)
            return dst
        return shutil.copy2(src, dst)

    shutil.copytree(base, table, copy_function=link)


def _ids(users: int, k: int) -> list[str]:
    rng = random.Random(11 + k)
    return sorted({f"u{rng.randrange(users):07d}" for _ in range(k * 2)})[:k]


def _table_bytes(table: Path) -> tuple[int, int]:
    """The table's data files and their bytes (as built: one commit per file, nothing removed)."""
    files = [p for p in table.rglob("*.parquet") if "_delta_log" not in p.relative_to(table).parts]
    return len(files), sum(p.stat().st_size for p in files)


# --- one run ---------------------------------------------------------------------------------------------------


def _prepare(base: Path, scratch: Path, job: dict[str, Any], kind: str | None) -> tuple[Path, dict[str, Any]]:
    """A fresh copy of the table as a dsr lake, with ``job``'s ids filed as ``kind`` requests (in this process,
    as a team files them: the measured process only runs), and its ``job.json``."""
    from dsr.core import control
    from dsr.core.policy import load_policy

    work = Path(tempfile.mkdtemp(dir=scratch))
    table = work / "lake" / "events"
    _copy(base, table)
    (work / "dsr.yml").write_text(POLICY, encoding="utf-8")
    if kind:
        csv = work / "requests.csv"
        csv.write_text("kind,subject_id\n" + "".join(f"{kind},{i}\n" for i in job["ids"]), encoding="utf-8")
        control.import_csv(load_policy(work / "dsr.yml"), str(csv))
    full = {**job, "table": str(table), "filed": True}
    (work / "job.json").write_text(json.dumps(full), encoding="utf-8")
    return work, full


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(HERE.parent), "DSR_PSEUDONYM_KEY": KEY}


def _result(name: str, code: int, stdout: str, stderr: str, seconds: float) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    if code != 0 or not lines:
        return {"name": name, "error": (stderr.strip().splitlines() or ["?"])[-1][:300], "exit_code": code}
    out = dict(json.loads(lines[-1]))
    out["process_seconds"] = round(seconds, 3)  # from outside: interpreter start and imports included
    if out.get("exit_code"):
        out["error"] = f"dsr run exited {out['exit_code']}: " + " | ".join(stderr.strip().splitlines()[-3:])[:300]
    return out


def timed(name: str, base: Path, scratch: Path, job: dict[str, Any], kind: str | None) -> dict[str, Any]:
    work, _ = _prepare(base, scratch, job, kind)
    t = time.perf_counter()
    done = subprocess.run([sys.executable, str(HERE / "compete.py"), name, str(work)], capture_output=True,
                          text=True, env=_env(), timeout=7200, check=False)
    spent = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    return _result(name, done.returncode, done.stdout, done.stderr, spent)


def traced_run(base: Path, scratch: Path, job: dict[str, Any], kind: str) -> dict[str, Any]:
    """The dsr process under strace: the data files it opened and read, against those its erase commit added."""
    from deltalake import DeltaTable

    work, full = _prepare(base, scratch, job, kind)
    table = Path(full["table"])
    before = DeltaTable(str(table))
    live = frozenset(os.path.realpath(u) for u in before.file_uris())
    t = time.perf_counter()
    trace = traced([sys.executable, str(HERE / "compete.py"), "dsr_run_remote", str(work)], env=_env(),
                   timeout=7200, reads=True)
    out = _result("dsr_run_remote", trace.returncode, trace.stdout, trace.stderr, time.perf_counter() - t)
    after = int(DeltaTable(str(table)).version())
    added = commit_adds(table, range(int(before.version()) + 1, after + 1))
    opened = trace.data_files(table)
    log = os.path.join(os.path.realpath(table), "_delta_log") + os.sep
    found = {
        "traced_seconds": out.get("process_seconds"), "peak_rss_mb_traced": out.get("peak_rss_mb"),
        "files_live": len(live), "files_added_by_erase": len(added),
        "data_files_opened": len(opened), "live_files_opened": len(opened & live),
        "added_files_opened": len(opened & added), "data_files_opened_not_added": len(opened - added),
        "data_bytes_read": trace.bytes_from(opened), "data_bytes_read_not_added": trace.bytes_from(opened - added),
        "log_bytes_read": trace.bytes_from(p for p in trace.read_bytes if p.startswith(log)),
        "all_files_opened": len(trace.paths),
    }
    if "error" in out:
        found["error"] = out["error"]
    shutil.rmtree(work, ignore_errors=True)
    return found


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sorted((r for r in results if "error" not in r), key=lambda r: r["seconds"])
    if not ok:
        return results[0]
    out = dict(ok[len(ok) // 2])
    out["seconds"] = round(statistics.median(r["seconds"] for r in ok), 3)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    return out


# --- one size ------------------------------------------------------------------------------------------------


def measure(base: Path, scratch: Path, remote: str, rows: int, files: int, ks: list[int], reps: int
            ) -> dict[str, Any]:
    users = max(1000, rows // 20)
    live, size = _table_bytes(base)
    out: dict[str, Any] = {"rows": rows, "files": files, "files_live": live, "table_bytes": size, "cases": []}
    for k in ks:
        ids = _ids(users, k)
        job = {"ids": ids, "holding": holding(base, ids), "remote": remote}
        merge = _median([timed("sail_merge_remote", base, scratch, job, None) for _ in range(reps)])
        print(f"{rows:>12,} rows, {files} files, K={k}: {len(job['holding'])} file(s) hold rows; the Sail MERGE "
              f"alone {merge.get('seconds', 'ERROR')} s {merge.get('error', '')}", flush=True)
        for kind in KINDS:
            run = _median([timed("dsr_run_remote", base, scratch, job, kind) for _ in range(reps)])
            reads = traced_run(base, scratch, job, kind)
            case = {"k": k, "kind": kind, "files_holding_rows": len(job["holding"]), "run": run, "reads": reads,
                    "merge_alone": merge if kind == "erase" else None}
            out["cases"].append(case)
            _print_case(rows, case)
    return out


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def _print_case(rows: int, case: dict[str, Any]) -> None:
    run, reads = case["run"], case["reads"]
    head = f"  {case['kind']:6} K={case['k']:<5}"
    if "error" in run:
        print(f"{head} ERROR {run['error']}", flush=True)
        return
    ge = run.get("ge_seconds", 0.0)
    print(f"{head} run {run['seconds']:.2f} s (GE import {ge:.2f} s; process {run['process_seconds']:.2f} s), "
          f"peak RSS {run['peak_rss_mb']:.0f} MB; opened {reads['live_files_opened']} of the table's "
          f"{reads['files_live']} data files and {reads['added_files_opened']} of the {reads['files_added_by_erase']} "
          f"its erase commit added, read {_mb(reads['data_bytes_read'])} of data "
          f"({_mb(reads['data_bytes_read_not_added'])} not added), {_mb(reads['log_bytes_read'])} of log"
          + (f"; TRACED RUN ERROR {reads['error']}" if "error" in reads else ""), flush=True)
    print("           [" + ", ".join(f"{k} {v}" for k, v in run.get("steps", {}).items()) + "]", flush=True)


# --- the targets ------------------------------------------------------------------------------------------------


def _verdict(target: str, case: str, measured: float, limit: float, breakdown: str) -> dict[str, Any]:
    return {"target": target, "case": case, "measured": round(measured, 3), "limit": limit,
            "met": measured <= limit, "breakdown": breakdown}


def verdicts(small: dict[str, Any], large: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 22's targets on the two sizes: memory flat in table size, the run against the MERGE alone at the
    large size and the largest K, and no data file read but those the erase commit added."""
    out: list[dict[str, Any]] = []
    before = {(c["kind"], c["k"]): c for c in small["cases"]}
    for c in large["cases"]:
        s = before.get((c["kind"], c["k"]))
        if s is None or "error" in s["run"] or "error" in c["run"]:
            continue
        a, b = s["run"]["peak_rss_mb"], c["run"]["peak_rss_mb"]
        out.append(_verdict(
            f"dsr process peak RSS grows <= {RSS_GROWTH:.0%} from {small['rows']:,} to {large['rows']:,} rows",
            f"{c['kind']}, K={c['k']}", b / a - 1, RSS_GROWTH,
            f"peak {a:.0f} MB -> {b:.0f} MB; the process opened {s['reads'].get('data_files_opened')} -> "
            f"{c['reads'].get('data_files_opened')} data files, read {_mb(s['reads'].get('data_bytes_read', 0))} -> "
            f"{_mb(c['reads'].get('data_bytes_read', 0))} of them"))
    erases = [c for c in large["cases"] if c["kind"] == "erase" and "error" not in c["run"]]
    if erases:
        c = max(erases, key=lambda c: c["k"])
        merge, run = c["merge_alone"], c["run"]
        if merge and "error" not in merge:
            spent = run["seconds"] - run.get("ge_seconds", 0.0)
            steps = ", ".join(f"{k} {v:.2f}" for k, v in run.get("steps", {}).items())
            out.append(_verdict(f"(erase run - GE import) <= {MERGE_RATIO:g}x the Sail MERGE alone at "
                                f"{large['rows']:,} rows", f"erase, K={c['k']}", spent / merge["seconds"],
                                MERGE_RATIO, f"run {spent:.2f} s = {steps} (GE import {run.get('ge_seconds', 0):.2f} "
                                f"apart); the MERGE alone {merge['seconds']:.2f} s"))
    for size in (small, large):
        for c in size["cases"]:
            r = c["reads"]
            if "data_files_opened_not_added" not in r:
                continue
            out.append(_verdict("the dsr process opens no data file but those its erase commit added",
                                f"{size['rows']:,} rows, {c['kind']}, K={c['k']}", r["data_files_opened_not_added"],
                                0, f"opened {r['live_files_opened']} of the table's {r['files_live']} data files "
                                f"and {r['added_files_opened']} of the {r['files_added_by_erase']} its erase added; "
                                f"read {_mb(r['data_bytes_read'])} of data, {_mb(r['data_bytes_read_not_added'])} "
                                "from files it did not add"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows of the small table (the large has 10x)")
    ap.add_argument("--files", type=int, default=100, help="files of the small table (the large has 10x)")
    ap.add_argument("--k", type=int, nargs="+", default=None, help="requests per run (default 1 1000; --quick 1 10)")
    ap.add_argument("--reps", type=int, default=1, help="timed runs per case (median time, highest peak)")
    ap.add_argument("--quick", action="store_true", help="50,000 rows in 20 files, and 10x (a smoke test)")
    ap.add_argument("--data", type=Path, default=HERE / "data", help="where the built tables are cached")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.files, args.reps = 50_000, 20, 1
    ks = args.k or ([1, 10] if args.quick else [1, 1000])
    if strace() is None:
        print("strace is missing: it counts the files the dsr process reads (make strace installs it as root)",
              file=sys.stderr)
        return 2
    os.environ.setdefault("DSR_PSEUDONYM_KEY", KEY)
    sizes = []
    with tempfile.TemporaryDirectory(prefix="dsr-spark-scale-") as tmp, sail_server() as remote:
        for m in (1, 10):
            rows, files = args.rows * m, args.files * m
            base = cached_table(args.data, rows, files)
            sizes.append(measure(base, Path(tmp), remote, rows, files, ks, args.reps))
    found = verdicts(*sizes)
    print_verdicts(found)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"spark-scale-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(), "machine": _machine(),
                                "params": {"rows": args.rows, "files": args.files, "k": ks, "reps": args.reps},
                                "sizes": sizes, "targets": found}, indent=2) + "\n", encoding="utf-8")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
