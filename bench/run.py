"""Benchmark: export and erasure speed and memory on a generated lake (``make bench``).

Writes an events table of ``--rows`` rows (partitioned by day, several files per partition) and a users table,
files ``--subjects`` export and erase requests, then times each pipeline step on the delta-rs engine and
records the peak resident memory of the process. Results go to stdout and ``bench/out/<timestamp>.json``.
Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

POLICY = """\
lake: ./lake
exports: ./exports
tables:
  - {name: events, path: events, subject: user_id, erase: delete}
  - name: users
    path: users
    subject: user_id
    erase: anonymise
    mask: {user_id: pseudonymise, email: nullify, last_ip: ipv4_24}
"""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(root: Path, rows: int, users: int, days: int, files_per_day: int, seed: int = 3) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    rng = random.Random(seed)
    ids = [f"u{i:07d}" for i in range(users)]
    per_file = max(1, rows // (days * files_per_day))
    start = dt.date(2026, 1, 1)
    for d in range(days):
        day = (start + dt.timedelta(days=d)).isoformat()
        for _ in range(files_per_day):
            write_deltalake(str(root / "lake" / "events"), pa.table({
                "user_id": [rng.choice(ids) for _ in range(per_file)],
                "event_date": [day] * per_file,
                "page": [rng.choice(("/", "/cart", "/help", "/search")) for _ in range(per_file)],
                "value": [rng.random() for _ in range(per_file)],
            }), mode="append", partition_by=["event_date"])
    write_deltalake(str(root / "lake" / "users"), pa.table({
        "user_id": ids, "email": [f"{i}@example.org" for i in ids],
        "last_ip": [f"10.0.{i % 256}.{i % 7}" for i in range(users)],
    }))
    (root / "dsr.yml").write_text(POLICY, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="events rows (default 1,000,000)")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--subjects", type=int, default=50, help="subjects per request kind in the batch")
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--files-per-day", type=int, default=4)
    args = ap.parse_args(argv)
    os.environ.setdefault("DSR_PSEUDONYM_KEY", "bench-key-0123456789abcdef")

    from dsr import steps
    from dsr.core import control
    from dsr.core.policy import check_against_lake, load_policy
    from dsr.delta import access
    from dsr.engines.deltars import DeltaRsEngine

    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build(root, args.rows, args.users, args.days, args.files_per_day)
        timings: dict[str, Any] = {"build_lake_s": round(time.perf_counter() - t0, 2)}
        policy = load_policy(root / "dsr.yml")
        check_against_lake(policy)
        rng = random.Random(5)
        chosen = rng.sample(range(args.users), args.subjects * 2)
        for i in chosen[: args.subjects]:
            control.submit(policy, "export", f"u{i:07d}")
        for i in chosen[args.subjects:]:
            control.submit(policy, "erase", f"u{i:07d}")
        engine = DeltaRsEngine()
        base_mb = _peak_mb()

        def timed(name: str, fn: Any, *a: Any) -> Any:
            t = time.perf_counter()
            out = fn(*a)
            timings[name] = round(time.perf_counter() - t, 3)
            return out

        batch = timed("claim_s", steps.claim_batch, policy)
        rid = batch["run_id"]
        erased: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        for step in steps.STEPS:
            for t in batch[step.per_table] if step.per_table else [None]:
                out = timed(f"{step.name}_{t}_s" if t else f"{step.name}_s", steps.call, step, policy, rid, engine, t)
                if step.name == "erase":
                    erased[str(t)] = out
                if step.always:
                    summary = out
        result = {
            "at": dt.datetime.now(dt.UTC).isoformat(), "python": sys.version.split()[0],
            "params": vars(args), "timings": timings, "scans": dict(access.scans.items()),
            "erase": erased, "summary": summary,
            "peak_rss_mb": round(_peak_mb(), 1), "rss_before_run_mb": round(base_mb, 1),
        }
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    path = out / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json"
    text = json.dumps(result, indent=2, default=str)
    path.write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"written to {path}", file=sys.stderr)
    return 0 if summary.get("exit_code") == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
