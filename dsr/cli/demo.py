"""``dsr demo``: build the demo lake (``dsr.cli.demolake``), then run the Airflow DAG on it end to end.

``run_demo`` rebuilds the directory, runs ``airflow db migrate`` on a throw-away AIRFLOW_HOME inside it and
``airflow dags test dsr_process``, showing progress, then prints a summary a person can read at a glance.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dsr.cli.demolake import DEMO_MARKER, KEY_ENV, DemoInfo, DemoRequest, build_demo_lake
from dsr.cli.demoleaks import airflow_texts, subject_id_leaks
from dsr.core.masks import Strategy

__all__ = [
    "DEMO_MARKER",
    "KEY_ENV",
    "DemoInfo",
    "DemoRequest",
    "airflow_env",
    "airflow_texts",
    "build_demo_lake",
    "run_demo",
    "subject_id_leaks",
]

DAG_ID = "dsr_process"

# --- dsr demo ----------------------------------------------------------------------------------------------


def _say(msg: str) -> None:
    print(msg, flush=True)


def _prepare_dir(root: Path) -> None:
    from dsr.errors import InputError

    if root.exists():
        if not root.is_dir():
            raise InputError(f"demo: {root} exists and is not a directory")
        if any(root.iterdir()) and not (root / DEMO_MARKER).exists():
            raise InputError(f"demo: {root} is not empty and is not a dsr demo directory; pick another --dir")
        shutil.rmtree(root)
    root.mkdir(parents=True)


def dags_folder() -> Path:
    """The repository's dags/ folder (next to the dsr package in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "dags"


def airflow_env(airflow_home: str | os.PathLike[str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for airflow subprocesses on a throw-away AIRFLOW_HOME (SQLite, no examples)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
    })
    env.update(extra or {})
    return env


def airflow_bin() -> str:
    """The ``airflow`` executable of this interpreter's environment."""
    path = Path(sys.executable).parent / "airflow"
    return str(path) if path.exists() else (shutil.which("airflow") or str(path))


class _Progress:
    """Turns ``airflow dags test`` output into short 'task[i] -> state' lines (None for noise)."""

    _START = re.compile(r"\[DAG TEST\] starting task_id=(\w+) map_index=(-?\d+)")
    _STATE = re.compile(r"new_state=(\w+)")
    _RUN = re.compile(r"DagRun Finished: .*?state=(\w+)")
    _ERROR = re.compile(r"\[(error|critical)\s*\]\s*(.*?)\s+\[")

    def __init__(self) -> None:
        self.task = ""

    def feed(self, line: str) -> str | None:
        text = re.sub(r"\x1b\[[0-9;]*m", "", line)
        m = self._START.search(text)
        if m:
            self.task = m.group(1) + (f"[{m.group(2)}]" if m.group(2) != "-1" else "")
            return None
        m = self._STATE.search(text)
        if m and self.task:
            return f"{self.task:20} {m.group(1)}"
        m = self._RUN.search(text)
        if m:
            return f"DAG run {m.group(1)}"
        m = self._ERROR.search(text)
        if m:
            return f"{self.task or 'airflow':20} error: {m.group(2)[:160]}"
        return None


def _stream(cmd: list[str], env: Mapping[str, str], log_path: Path, *, heartbeat: float = 10.0) -> int:
    """Run cmd with its output in log_path; show task-state lines, and a heartbeat when quiet."""
    lines: queue.Queue[str | None] = queue.Queue()
    proc = subprocess.Popen(
        cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        errors="replace",
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    progress = _Progress()
    started = last = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                log.write(line)
                shown = progress.feed(line)
                if shown:
                    _say(f"      {time.monotonic() - started:5.0f}s  {shown}")
                    last = time.monotonic()
            if time.monotonic() - last >= heartbeat:
                _say(f"      {time.monotonic() - started:5.0f}s  ... (working on {progress.task or 'start-up'})")
                last = time.monotonic()
    return proc.wait()


def run_demo(dir: str) -> int:
    """``dsr demo``: rebuild DIR, run the DAG on it with Airflow, print a summary. 0 when all went well."""
    root = Path(dir).resolve()
    t0 = time.monotonic()
    dag_file = dags_folder() / f"{DAG_ID}.py"
    if not dag_file.exists() or not Path(airflow_bin()).exists():
        print(f"dsr demo: needs the DAG file {dag_file} (a source checkout) and Airflow installed next to "
              f"{sys.executable} (pip install -e '.[airflow]', or simply `make demo`)", file=sys.stderr)
        return 2
    _say(f"[1/6] building the demo lake in {root} ...")
    _prepare_dir(root)
    info = build_demo_lake(root)
    for name, n in info.rows.items():
        _say(f"      {name:16} {n:>7,} rows")
    os.environ.update(info.env)

    _say(f"[2/6] filed {len(info.requests)} requests (policy {info.policy_path}):")
    for r in info.requests:
        _say(f"      {r.request_id}  {r.kind:6}  ({r.table_hint})")

    _say("[3/6] preparing a throw-away Airflow (SQLite) ...")
    home = root / "airflow"
    home.mkdir()
    env = airflow_env(home, {**info.env, "DSR_ENGINE": "delta-rs"})
    migrate = subprocess.run(
        [airflow_bin(), "db", "migrate"], env=env, capture_output=True, text=True, errors="replace",
    )
    (home / "db-migrate.log").write_text(migrate.stdout + migrate.stderr, encoding="utf-8")
    if migrate.returncode != 0:
        print(f"dsr demo: `airflow db migrate` failed (exit {migrate.returncode}); see {home / 'db-migrate.log'}",
              file=sys.stderr)
        return 1

    _say(f"[4/6] airflow dags test {DAG_ID} (output in {home / 'dags-test.log'}) ...")
    rc = _stream([airflow_bin(), "dags", "test", DAG_ID], env, home / "dags-test.log")
    _say(f"      airflow exited with {rc}")

    from dsr.cli.demopackages import package_lines
    from dsr.core.policy import load_policy

    _say("[5/6] summary")
    ok = _summary(info) and rc == 0
    leaks = subject_id_leaks(sorted({v for r in info.requests for _, v in r.known} | {r.subject_id for r in
                                                                                     info.requests}),
                             airflow_texts(home))
    if leaks:
        ok = False
        _say(f"  subject ids FOUND in: {', '.join(leaks)}")
    else:
        _say("  no subject id in the Airflow output, task logs or XCom table")
    _say("  export packages (zip: README.txt, the data files, manifest.json)")
    for line in package_lines(load_policy(info.policy_path)):
        _say(f"    {line}")
    _say("[6/6] purge: the DAG's purge task ran (the demo policy sets purge_after_hours: 0); a residue scan with "
         "the ids the demo filed:")
    from dsr.cli.purge import purge_lines

    erased = {r.request_id: r.known for r in info.requests if r.kind == "erase"}
    purged, lines = purge_lines(load_policy(info.policy_path), erased)
    ok = ok and purged
    for line in lines:
        _say(f"    {line}")
    dsr = _shown_path(str(Path(sys.executable).parent / "dsr"))
    _say(f"\n{'demo OK' if ok else 'demo FAILED'} in {time.monotonic() - t0:.0f}s. Look around:")
    _say(f"  source {_shown_path(info.env_path)}")
    for args, what in look_around(info):
        _say(f"  {dsr} {' '.join(args):36} # {what}")
    return 0 if ok else 1


def look_around(info: DemoInfo) -> list[tuple[list[str], str]]:
    """The commands the demo suggests at its end, with what each shows: each has something to say on the lake
    the demo leaves (its erasures purged, their ids digested: ``dsr residue`` and ``dsr verify`` would find
    nothing left to scan; the purge's own residue scan is in the receipts)."""
    erasure = next(r.request_id for r in info.requests if r.kind == "erase")
    export = next(r.request_id for r in info.requests if r.kind == "export")
    return [
        (["requests"], "every request: status, due date, purged when"),
        (["receipt", erasure], "an erasure: rows and versions per table, GE, its purge and residue scan"),
        (["receipt", export], "an export: rows per table, the package (deleted if its person was erased)"),
        (["sweep", "--dry-run"], "every past erasure applied again: 0 rows would change"),
        (["audit", "verify"], "the audit log's hash chain"),
    ]


def _summary(info: DemoInfo) -> bool:
    from dsr.core import audit, control
    from dsr.core.policy import load_policy

    policy = load_policy(info.policy_path)
    reqs = control.list_requests(policy)
    ok = bool(reqs)
    _say("  requests")
    for r in reqs:
        ok = ok and r.status == "completed"
        _say(f"    {r.request_id}  {r.kind:6} {r.status:9}  {r.ticket or '-':9} {_request_line(r.result_json())}")
        if r.error:
            _say(f"      error: {r.error.splitlines()[0][:200]}")
    _say("  identity (each request resolved through the link tables; kinds and counts, never values)")
    for line in _identity_lines(policy, reqs):
        _say(f"    {line}")
    _say("  tables (this run's erasures)")
    for line in _table_lines(policy, [r.result_json() for r in reqs if r.kind == "erase"]):
        _say(f"    {line}")
    n, brk = audit.verify_chain(policy)
    if brk is None:
        _say(f"  audit chain OK ({n} events)")
    else:
        ok = False
        _say(f"  audit chain BROKEN at event {brk.seq}: {brk.why}")
    return ok


def _identity_lines(policy: Any, reqs: list[Any]) -> list[str]:
    """Per request filed by a kind other than user_id: what it resolved to, and the rows found per kind."""
    from dsr.core import audit

    events = audit.events_by_request(policy, [r.request_id for r in reqs])
    out = []
    for r in reqs:
        if (r.id_kind or "") == "user_id":
            continue
        resolved = [e["details"] for e in events[r.request_id] if e["event"] == "identity_resolved"]
        kinds = ", ".join(f"{k} {n}" for k, n in (resolved[-1]["kinds"] if resolved else {}).items())
        found: dict[str, int] = {}
        for e in events[r.request_id]:
            for col in (e["details"].get("columns") or {}).values() if e["event"] == "table_erased" else ():
                found[f"{e['table_name']} by {col['kind']}"] = int(col.get("rows") or 0)
        rows = ", ".join(f"{k} {n}" for k, n in sorted(found.items()) if n)
        out.append(f"{r.request_id}  {r.kind:6} filed by {r.id_kind}: resolved to {kinds or '-'}"
                   + (f"; rows: {rows}" if rows else ""))
    return out


def _shown_path(path: str) -> str:
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:
        return path


def _request_line(result: Mapping[str, Any]) -> str:
    """One line for one request's result (as the steps record it)."""
    tables = result.get("tables") or {}
    if result.get("kind") == "export":
        rows = sum(int(n or 0) for n in tables.values())
        where = f" -> {_shown_path(result['export_uri'])}" if result.get("export_uri") else ""
        return f"{rows} row(s) from {len(tables)} table(s){where}"
    groups: dict[str, list[str]] = {s.value: [] for s in Strategy}
    ge: list[bool] = []
    for name, t in tables.items():
        strategy = t.get("strategy", "?")
        groups.setdefault(strategy, []).append(name if strategy == Strategy.RETAIN else f"{name} {t.get('rows', 0)}")
        if t.get("ge_success") is not None:
            ge.append(bool(t["ge_success"]))
    labels: dict[str, str] = {Strategy.DELETE: "deleted", Strategy.ANONYMISE: "anonymised",
                              Strategy.RETAIN: "retained"}
    parts = [f"{labels.get(k, k)}: {', '.join(v)}" for k, v in groups.items() if v]
    if ge:
        parts.append(f"GE {'passed' if all(ge) else 'FAILED'}")
    return " | ".join(parts)


def _table_lines(policy: Any, results: list[Mapping[str, Any]]) -> list[str]:
    """Per policy table: strategy, rows affected by all erasures, Delta versions, GE outcome."""
    out = []
    for t in policy.tables:
        entries = [r["tables"][t.name] for r in results if t.name in (r.get("tables") or {})]
        if t.erase is Strategy.RETAIN:
            out.append(f"{t.name:16} {t.erase:9}  rows kept: {t.reason}")
            continue
        if not entries:
            out.append(f"{t.name:16} {t.erase:9}  not erased in this run")
            continue
        rows = sum(int(e.get("rows") or 0) for e in entries)
        versions = sorted({(e.get("version_before"), e.get("version_after")) for e in entries} - {(None, None)})
        ver = ", ".join(f"v{b} -> v{a}" for b, a in versions if b != a) or "no commit"
        ge = [e.get("ge_success") for e in entries if e.get("ge_success") is not None]
        verdict = "GE passed" if ge and all(ge) else ("GE FAILED" if ge else "GE not run")
        verb = "deleted" if t.erase is Strategy.DELETE else "anonymised"
        out.append(f"{t.name:16} {t.erase:9}  {rows:>5} row(s) {verb:10}  Delta {ver:12}  {verdict}")
    return out
