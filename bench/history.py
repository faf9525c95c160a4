"""Bookkeeping against a long history (``make bench-history``; part of ``make bench``).

A team's control table and audit log only grow. This builds a lake whose control table already holds
``--requests`` requests (most of them completed) and whose audit log holds ``--events`` events, both filed in
bulk through dsr itself (imports and audit appends of many events per commit, so the chain is real), then
measures what a team pays on top of that history:

* ``request_erase``: one ``dsr request erase SUBJECT`` (the CLI in a fresh process, interpreter start included,
  and the same call in this process);
* ``run_bookkeeping``: a ``dsr run`` (the CLI, in this process) of ``--batch`` erasures on a small table, with
  the wall time spent inside the control table, audit log and suppression list modules (their public functions,
  as the steps call them); the run's other steps are reported beside it;
* the views a team opens every day (``dsr requests``, ``dsr check``, ``dsr status``) and a sweep's dry run;
* the same on an empty history, so the growth is the difference.

Prints the table and writes JSON to ``bench/out/history-<time>.json``. Times are measured here, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compete import POLICY  # noqa: E402  (the bench's one policy: an events table, erase by delete)


def _lake(root: Path) -> Any:
    import pyarrow as pa
    from deltalake import write_deltalake

    from dsr.core.policy import load_policy

    os.environ.setdefault("DSR_PSEUDONYM_KEY", "bench-key-0123456789abcdef")
    (root / "lake").mkdir(parents=True)
    write_deltalake(str(root / "lake" / "events"), pa.table({
        "user_id": [f"u{i % 5000:07d}" for i in range(20_000)], "page": ["/"] * 20_000,
    }))
    (root / "dsr.yml").write_text(POLICY, encoding="utf-8")
    return load_policy(root / "dsr.yml")


def build_history(policy: Any, requests: int, events: int, *, chunk: int = 20_000, days: int = 365
                  ) -> dict[str, float]:
    """``requests`` completed erasures received over the past ``days`` (control-table rows written in bulk, in
    dsr's schema) with their suppression-list entries, and their audit events as the runs that did them would
    have written them — received, claimed, table_erased (under the table's current spec), completed and, as the
    daily purge does a week later, table_purged and minimised; padded with verified events up to ``events`` —
    appended through dsr's own chain, ``chunk`` requests per commit, each commit dated when its requests were
    done; then the coverage checkpoint and the audit log's verified point (a full check of the chain) the last
    run would have written. Returns the seconds it took."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from dsr.core import audit, suppression
    from dsr.core import requests as reqs
    from dsr.steps.sweep_state import spec_of

    t = time.perf_counter()
    spec = spec_of(policy.table("events"))
    kinds = ["received", "claimed", "table_erased", "completed", "table_purged", "minimised"]
    per_request = max(len(kinds), events // max(1, requests))
    kinds += ["verified"] * (per_request - len(kinds))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    reqs.open_requests(policy)
    for first in range(0, requests, chunk):
        at = start + dt.timedelta(days=days * first / requests)
        run = f"run_{at:%Y%m%dT%H%M%S}_{first:08x}"
        rows = [{"request_id": reqs.new_request_id(), "kind": "erase", "subject_id": f"old{first + i:09d}",
                 "status": "completed", "ticket": None, "requested_by": None, "received_at": at,
                 "due_at": at + dt.timedelta(days=30), "updated_at": at, "attempts": 1, "run_id": run,
                 "lease_until": None, "error": None, "export_uri": None, "result": "{}"}
                for i in range(min(chunk, requests - first))]
        write_deltalake(policy.requests_uri, pa.Table.from_pylist(rows, schema=reqs.schema()), mode="append")
        suppression.ensure(policy, policy.pseudonym_key(), [reqs.Request(**r) for r in rows])
        audit.append(policy, [
            audit.AuditEvent(kind, request_id=r["request_id"], run_id=None if kind == "received" else run,
                             table_name="events" if kind in ("table_erased", "verified", "table_purged") else None,
                             details={"spec": spec, "strategy": "delete", "rows": 1, "version_before": 0,
                                      "version_after": 1} if kind == "table_erased" else {})
            for r in rows for kind in kinds
        ], now=at)
    from dsr.steps.sweep_pending import pending_tables

    found = pending_tables(policy, record=True)  # what the last of those runs did: its coverage checkpoint
    if found:
        raise SystemExit(f"the built history leaves tables pending their first sweep: {found}")
    from dsr.core import audit_guard

    audit_guard.remember(policy, audit_guard.require_intact_chain(policy))  # and its audit log's verified point
    return {"build_seconds": round(time.perf_counter() - t, 1)}


def _cli(root: Path, *args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dsr.cli", "--policy", str(root / "dsr.yml"), *args], check=True,
                   capture_output=True, env={**os.environ, "DSR_LOG_LEVEL": "WARNING"})
    return time.perf_counter() - t


class Ledger:
    """Wraps the public functions of the control table, audit log (and its guard) and suppression list modules
    (which the steps call through the module: ``control.claim(...)``) and adds up the wall time spent inside
    them, nested calls counted once."""

    MODULES = ("dsr.core.control", "dsr.core.audit", "dsr.core.audit_guard", "dsr.core.suppression")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.by_function: dict[str, float] = {}
        self._depth = 0
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> Ledger:
        import importlib
        import inspect

        for name in self.MODULES:
            module = importlib.import_module(name)
            for attr, fn in vars(module).items():
                if inspect.isfunction(fn) and not attr.startswith("_"):
                    self._saved.append((module, attr, fn))
                    setattr(module, attr, self._wrap(fn))
        return self

    def __exit__(self, *exc: object) -> None:
        for module, attr, fn in self._saved:
            setattr(module, attr, fn)

    def _wrap(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    spent = time.perf_counter() - t
                    self.seconds += spent
                    name = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"
                    self.by_function[name] = self.by_function.get(name, 0.0) + spent
        return timed


def measure(root: Path, policy: Any, batch: int) -> dict[str, Any]:
    """One CLI ``request erase``, one in-process submit, and one ``dsr run`` (the CLI's entry point, in this
    process) of ``batch`` erasures with its bookkeeping timed."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from dsr.cli.main import main
    from dsr.core import control
    from dsr.verify.ge import Validator

    cli = _cli(root, "request", "erase", "fresh-cli-subject")
    t = time.perf_counter()
    control.submit(policy, "erase", "fresh-inproc-subject")
    submit = time.perf_counter() - t
    for i in range(batch):
        control.submit(policy, "erase", f"u{i:07d}")
    Validator.shared()  # GE's import is its own floor (bench/compare.py measures it)
    from dsr.delta import tables as deltautil

    deltautil.reads.clear()
    with Ledger() as ledger:
        t = time.perf_counter()
        with redirect_stdout(io.StringIO()) as said, redirect_stderr(io.StringIO()):
            code = main(["--policy", str(root / "dsr.yml"), "run"])
        spent = time.perf_counter() - t
    if code != 0 or f"{batch + 2} completed" not in said.getvalue():  # the batch and the two requests above
        raise SystemExit(f"the measured dsr run did not complete its requests: {said.getvalue().strip()}")
    books = ledger.seconds
    reads = {f"{Path(uri).name} {kind}": n for (uri, kind), n in sorted(deltautil.reads.items())
             if Path(uri).name in ("requests", "audit", "suppression")}
    views = {}
    for name, args in (("requests_pending", ["requests", "--status", "pending"]), ("check", ["check"]),
                       ("status", ["status", "--json"]), ("sweep_dry_run", ["sweep", "--dry-run"])):
        t = time.perf_counter()
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            main(["--policy", str(root / "dsr.yml"), *args])
        views[f"{name}_seconds"] = round(time.perf_counter() - t, 3)
    return {"request_erase_cli_seconds": round(cli, 3), "submit_seconds": round(submit, 3),
            "run_seconds": round(spent, 3), "run_bookkeeping_seconds": round(books, 3),
            "run_other_seconds": round(spent - books, 3), **views,
            "run_reads_of_dsr_tables": reads,
            "run_bookkeeping_by_function": {k: round(v, 3) for k, v in sorted(
                ledger.by_function.items(), key=lambda kv: -kv[1])}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=10, help="erasures in the measured run")
    ap.add_argument("--quick", action="store_true", help="2,000 requests and 10,000 events (a smoke test)")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="where the JSON goes")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.events = 2_000, 10_000
    sys.path.insert(0, str(HERE.parent))
    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                           "requests": args.requests, "events": args.events, "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="dsr-history-") as tmp:
        empty = Path(tmp, "empty")
        out["empty"] = measure(empty, _lake(empty), args.batch)
        full = Path(tmp, "full")
        policy = _lake(full)
        out["build"] = build_history(policy, args.requests, args.events)
        out["history"] = measure(full, policy, args.batch)
    _print(out)
    dest = args.out / f"history-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"\nJSON: {dest}")
    return 0


def _print(out: dict[str, Any]) -> None:
    print(f"bookkeeping with {out['requests']:,} requests and {out['events']:,} audit events already filed "
          f"over a year (built in {out['build']['build_seconds']} s)\n")
    print(f"{'':34}{'empty history':>16}{'long history':>16}{'target':>10}")
    rows = [("dsr request erase (CLI, process)", "request_erase_cli_seconds", ""),
            ("submit (in process)", "submit_seconds", "0.3 s"),
            (f"run of {out['batch']} erasures", "run_seconds", ""),
            ("  of which control + audit", "run_bookkeeping_seconds", "0.5 s"),
            ("  the rest (scan, MERGE, verify)", "run_other_seconds", ""),
            ("dsr requests --status pending", "requests_pending_seconds", ""),
            ("dsr check", "check_seconds", ""),
            ("dsr status --json", "status_seconds", ""),
            ("dsr sweep --dry-run", "sweep_dry_run_seconds", "")]
    for label, key, target in rows:
        verdict = ""
        if target:
            verdict = "  met" if out["history"][key] <= float(target.split()[0]) else "  NOT MET"
        print(f"{label:34}{out['empty'][key]:>14.3f} s{out['history'][key]:>14.3f} s{target:>10}{verdict}")
    print("\nthe run's control + audit time by function (long history):")
    for name, seconds in list(out["history"]["run_bookkeeping_by_function"].items())[:8]:
        print(f"  {name:32}{seconds:>8.3f} s")
    reads = ", ".join(f"{k}: {n}" for k, n in out["history"]["run_reads_of_dsr_tables"].items())
    print(f"reads of dsr's tables during the run: {reads}")


if __name__ == "__main__":
    sys.exit(main())
