"""Memory against table size, the touched files held fixed (``make bench-flat``; ``--quick`` for a small run).

One subject erased from a table clustered by subject (its rows in one file), at two sizes with the same file size:
``--rows`` rows in ``--files`` files, then ten times both. dsr's erase step and the same MERGE alone
(``bench/compete.py``) each run in their own process on a fresh copy, ``--reps`` times (median time, highest
peak). dsr's memory is flat in table size when its excess over the MERGE alone does not grow with the table; the
MERGE's own growth is delta-rs' (its streamed mode reads every file of the partition it may touch, and it holds
the log of every file). Prints both sizes and the verdict; writes JSON to ``bench/out/flat-<time>.json``.
Measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare import _machine, _median, build, holding, run_one  # noqa: E402  (bench/ is not a package)

SLACK_MB = 32.0
"""How much dsr's excess over the MERGE alone may differ between the sizes and still be flat (peak RSS is read
in whole pages of a process whose allocator keeps freed memory: a few tens of MB are noise)."""


def measure(scratch: Path, rows: int, files: int, reps: int) -> dict[str, Any]:
    """One size: the table built, one subject's rows located, each competitor run ``reps`` times."""
    users = max(1000, rows // 20)
    base = scratch / f"base-{rows}"
    build(base, rows, users, files, 10, clustered=True)
    ids = [f"u{random.Random(11).randrange(users):07d}"]
    job = {"ids": ids, "holding": holding(base, ids), "loop_cap": 1}
    out: dict[str, Any] = {"rows": rows, "files": files, "files_holding_rows": len(job["holding"])}
    for name in ("dsr_erase", "merge_alone"):
        out[name] = _median([run_one(name, base, job, scratch) for _ in range(reps)])
    return out


def verdict(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """Flat when dsr's excess over the MERGE alone grows by at most SLACK_MB from the small table to the large."""
    excess = [s["dsr_erase"]["peak_rss_mb"] - s["merge_alone"]["peak_rss_mb"] for s in (small, large)]
    merge = [s["merge_alone"]["peak_rss_mb"] for s in (small, large)]
    return {"target": "erase step memory flat in table size, the touched files fixed",
            "met": excess[1] - excess[0] <= SLACK_MB, "dsr_excess_mb": [round(e, 1) for e in excess],
            "merge_alone_mb": merge, "breakdown": (
                f"dsr's excess over the MERGE alone {excess[0]:.0f} MB at {small['files']} files, {excess[1]:.0f} MB "
                f"at {large['files']}; the MERGE alone {merge[0]:.0f} -> {merge[1]:.0f} MB (delta-rs' own growth)")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows of the small table (the large has 10x)")
    ap.add_argument("--files", type=int, default=100, help="files of the small table (the large has 10x)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="50,000 rows in 20 files, and 10x (a smoke test)")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.files, args.reps = 50_000, 20, 1
    with tempfile.TemporaryDirectory(prefix="dsr-flat-") as tmp:
        sizes = [measure(Path(tmp), args.rows * m, args.files * m, args.reps) for m in (1, 10)]
    found = verdict(*sizes)
    for s in sizes:
        print(f"{s['rows']:>12,} rows in {s['files']:>5} files ({s['files_holding_rows']} holding the subject's rows): "
              + ", ".join(f"{n} {s[n].get('seconds', 0):.3f} s {s[n].get('peak_rss_mb', 0):.0f} MB"
                          for n in ("dsr_erase", "merge_alone")))
    print(f"{'met' if found['met'] else 'NOT MET'} {found['target']}: {found['breakdown']}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"flat-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(), "machine": _machine(),
                                "sizes": sizes, "verdict": found}, indent=2) + "\n", encoding="utf-8")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
