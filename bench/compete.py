"""One competitor of ``bench/compare.py``, in its own process, on its own copy of the table.

``python bench/compete.py NAME WORKDIR`` reads ``WORKDIR/job.json`` (the table, the subject ids, the files that
hold their rows), does one thing, and prints one JSON line: the seconds the operation took (measured inside this
process, imports and set-up excluded unless they are the point), its peak RSS, and what it touched. The driver
never imports the competitors, so each peak RSS is that competitor's alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLICY = """\
lake: ./lake
exports: ./exports
pseudonym_key_env: DSR_PSEUDONYM_KEY
tables:
  - {name: events, path: events, subject: user_id, erase: delete}
"""


def _rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which exec resets (``ru_maxrss`` keeps the peak of the
    forked parent, the driver, whose memory is not this competitor's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _in_list(ids: list[str]) -> str:
    return "user_id IN (" + ", ".join("'" + i.replace("'", "''") + "'" for i in ids) + ")"


def _files_changed(table: str, before: int) -> dict[str, int]:
    """Files removed and added by the commits after ``before`` (from the log)."""
    removed = added = 0
    for v in range(before + 1, _version(table) + 1):
        with open(f"{table}/_delta_log/{v:020d}.json", encoding="utf-8") as f:
            for line in f:
                removed += '"remove"' in line[:12]
                added += '"add"' in line[:9]
    return {"files_removed": removed, "files_added": added}


def _version(table: str) -> int:
    from deltalake import DeltaTable

    return int(DeltaTable(table).version())


def loop_delete(job: dict[str, Any]) -> dict[str, Any]:
    """One DELETE per subject, at most ``loop_cap`` of them; the rest extrapolated from their mean."""
    from deltalake import DeltaTable

    ids = job["ids"][: job["loop_cap"]]
    t = time.perf_counter()
    for i in ids:
        DeltaTable(job["table"]).delete(_in_list([i]))
    spent = time.perf_counter() - t
    return {"seconds": spent * len(job["ids"]) / len(ids), "measured": len(ids),
            "extrapolated": len(ids) < len(job["ids"])}


def delete_in(job: dict[str, Any]) -> dict[str, Any]:
    from deltalake import DeltaTable

    before = _version(job["table"])
    t = time.perf_counter()
    DeltaTable(job["table"]).delete(_in_list(job["ids"]))
    return {"seconds": time.perf_counter() - t, **_files_changed(job["table"], before)}


def full_rewrite(job: dict[str, Any]) -> dict[str, Any]:
    """Read the whole table, drop the subjects' rows, overwrite it (one commit)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable, QueryBuilder, write_deltalake

    t = time.perf_counter()
    table = pa.table(QueryBuilder().register("t", DeltaTable(job["table"])).execute("SELECT * FROM t").read_all())
    table = table.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type)
                                  for f in table.schema]))  # DataFusion yields string views
    kept = table.filter(pc.invert(pc.fill_null(pc.is_in(table["user_id"], pa.array(job["ids"])), False)))
    write_deltalake(job["table"], kept, mode="overwrite", partition_by=["event_date"])
    return {"seconds": time.perf_counter() - t}


def bound(job: dict[str, Any]) -> dict[str, Any]:
    """The floor: pyarrow reads exactly the files that hold the subjects' rows, filters them, writes them back
    (no Delta commit, no check)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    keys = pa.array(job["ids"])
    t = time.perf_counter()
    for rel in job["holding"]:
        path = f"{job['table']}/{rel}"
        data = pq.read_table(path)
        kept = data.filter(pc.invert(pc.fill_null(pc.is_in(data["user_id"], keys), False)))
        pq.write_table(kept, path + ".bound.parquet")
    return {"seconds": time.perf_counter() - t, "files_read": len(job["holding"])}


def export_bound(job: dict[str, Any]) -> dict[str, Any]:
    """The floor of an export: one filtered scan of the subjects' rows."""
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    t = time.perf_counter()
    rows = pa.table(QueryBuilder().register("t", DeltaTable(job["table"])).execute(
        f"SELECT * FROM t WHERE {_in_list(job['ids'])}").read_all())
    return {"seconds": time.perf_counter() - t, "rows": rows.num_rows}


def files_floor(job: dict[str, Any]) -> dict[str, Any]:
    """The floor of one file per request: K files of 2 KB created (0600, as packages are), written and renamed
    into place, next to the copied table as dsr's exports folder is. What the packages of an export cost at
    the least on this file system."""
    import os

    folder = Path(job["table"]).parent.parent / "exports"
    folder.mkdir(mode=0o700)
    data = b"x" * 2048
    t = time.perf_counter()
    for i in range(len(job["ids"])):
        tmp, final = folder / f"{i:08d}.zip.tmp", folder / f"{i:08d}.zip"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    return {"seconds": time.perf_counter() - t, "files": len(job["ids"])}


def sail_merge(job: dict[str, Any]) -> dict[str, Any]:
    """MERGE ... WHEN MATCHED THEN DELETE on a Sail Spark Connect server (started here, not timed)."""
    import pyarrow as pa
    from pysail.spark import SparkConnectServer
    from pyspark.sql.connect.session import SparkSession

    server = SparkConnectServer(ip="127.0.0.1", port=0)
    server.start(background=True)
    host, port = server.listening_address
    spark = SparkSession.builder.remote(f"sc://{host}:{port}").create()
    spark.createDataFrame(pa.table({"k": job["ids"]}).to_pandas()).createOrReplaceTempView("src")
    before = _version(job["table"])
    t = time.perf_counter()
    spark.sql(f"MERGE INTO delta.`{job['table']}` t USING src s ON t.user_id = s.k WHEN MATCHED THEN DELETE").collect()
    spent = time.perf_counter() - t
    spark.stop()
    server.stop()
    return {"seconds": spent, **_files_changed(job["table"], before)}


def merge_alone(job: dict[str, Any]) -> dict[str, Any]:
    """The MERGE dsr's erase issues (delta-rs, streamed, the subjects as a pyarrow source, restricted to the
    partitions that hold their rows), alone: no pre-count, no audit, no check. What dsr's erase step and its
    peak memory are set against."""
    import pyarrow as pa
    from deltalake import DeltaTable

    _warm_writer(job)
    days = sorted({rel.split("/")[0].split("=", 1)[1] for rel in job["holding"]})
    within = " AND t.event_date IN (" + ", ".join(f"'{d}'" for d in days) + ")" if days else ""
    before = _version(job["table"])
    t = time.perf_counter()
    DeltaTable(job["table"]).merge(
        pa.table({"k": job["ids"]}), predicate="t.user_id = s.k" + within, source_alias="s", target_alias="t",
        streamed_exec=True).when_matched_delete().execute()
    return {"seconds": time.perf_counter() - t, **_files_changed(job["table"], before)}


def _warm_writer(job: dict[str, Any]) -> None:
    """A first write in a process pays about 0.25 s of delta-rs' writer set-up once (dsr's run pays it in the
    claim, before its MERGE): paid here on a scratch table, not timed."""
    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(str(Path(job["table"]).parent.parent / "warm"), pa.table({"k": ["x"]}))


def ge_import(job: dict[str, Any]) -> dict[str, Any]:
    t = time.perf_counter()
    import great_expectations as gx

    gx.get_context(mode="ephemeral")
    return {"seconds": time.perf_counter() - t}


def _dsr_lake(job: dict[str, Any], kind: str) -> tuple[Any, str]:
    """The copy as a dsr lake: policy, the subjects' requests filed and claimed (not timed)."""
    from dsr import steps
    from dsr.core.policy import check_against_lake

    root, policy = _policy_in(job)
    check_against_lake(policy)
    _file(policy, root, kind, job["ids"])
    return policy, steps.claim_batch(policy)["run_id"]


def _policy_in(job: dict[str, Any]) -> tuple[Path, Any]:
    """The copy's lake root with the bench policy written into it, and the policy loaded (the key set)."""
    import os

    from dsr.core.policy import load_policy

    root = Path(job["table"]).parent.parent
    os.environ.setdefault("DSR_PSEUDONYM_KEY", "bench-key-0123456789abcdef")
    (root / "dsr.yml").write_text(POLICY, encoding="utf-8")
    return root, load_policy(root / "dsr.yml")


def _file(policy: Any, root: Path, kind: str, ids: list[str]) -> None:
    """File the requests in one import (one commit), as a team files a backlog."""
    from dsr.core import control

    csv = root / "requests.csv"
    csv.write_text("kind,subject_id\n" + "".join(f"{kind},{i}\n" for i in ids), encoding="utf-8")
    control.import_csv(policy, str(csv))


def _timed(spent: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, adding the wall time of each call to ``spent[name]`` (the breakdowns of a step or a run)."""
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0

    return timed


def _timed_merge(engine: Any) -> dict[str, float]:
    """Wrap the engine's erase (the MERGE) to time it inside a step: the breakdown says where the step's time
    goes (the MERGE, a floor of delta-rs' streamed mode, vs dsr's pre-count and bookkeeping)."""
    spent = {"merge_seconds": 0.0}
    engine.erase = _timed(spent, "merge_seconds", engine.erase)
    return spent


def dsr_erase(job: dict[str, Any]) -> dict[str, Any]:
    """dsr's erase step alone (the MERGE with its pre-count and audit events), with the MERGE timed apart."""
    from dsr import steps
    from dsr.engines.deltars import DeltaRsEngine

    policy, run_id = _dsr_lake(job, "erase")
    engine = DeltaRsEngine()
    merge = _timed_merge(engine)
    before = _version(job["table"])
    t = time.perf_counter()
    steps.erase_table(policy, engine, run_id, "events")
    spent = time.perf_counter() - t
    return {"seconds": spent, "merge_seconds": round(merge["merge_seconds"], 3),
            "rest_seconds": round(spent - merge["merge_seconds"], 3), **_files_changed(job["table"], before)}


def dsr_verify(job: dict[str, Any]) -> dict[str, Any]:
    """dsr's verify step alone, after its erase step (not timed); GE imported before the clock starts."""
    from dsr import steps
    from dsr.engines.deltars import DeltaRsEngine
    from dsr.verify.ge import Validator

    policy, run_id = _dsr_lake(job, "erase")
    steps.erase_table(policy, DeltaRsEngine(), run_id, "events")
    Validator.shared()
    t = time.perf_counter()
    steps.verify_table(policy, DeltaRsEngine(), run_id, "events")
    return {"seconds": time.perf_counter() - t}


def dsr_export(job: dict[str, Any]) -> dict[str, Any]:
    """dsr's export: the table's scan (rows into the parts) and the packages (one zip per request: document,
    manifest, README), timed apart."""
    from dsr import steps
    from dsr.engines.deltars import DeltaRsEngine

    policy, run_id = _dsr_lake(job, "export")
    t = time.perf_counter()
    steps.export_table(policy, DeltaRsEngine(), run_id, "events")
    scanned = time.perf_counter()
    steps.finish_exports(policy, run_id)
    done = time.perf_counter()
    return {"seconds": done - t, "scan_seconds": round(scanned - t, 3), "packages_seconds": round(done - scanned, 3)}


def dsr_run(job: dict[str, Any], engine: tuple[str, ...] = ()) -> dict[str, Any]:
    """The whole ``dsr run`` (CLI entry point, in this process): claim, erase, verify, complete, GE import
    included; ``engine``: extra arguments choosing the engine."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from dsr.cli.main import main
    from dsr.verify.ge import Validator

    root, policy = _policy_in(job)
    if not job.get("filed"):  # else filed beforehand by the driver, outside this process
        _file(policy, root, "erase", job["ids"])

    ge = {"seconds": 0.0, "validations": 0.0}
    # the GE import and context, where the run pays them; and GE's own time in each suite
    shared = Validator.shared.__func__  # type: ignore[attr-defined]
    Validator.shared = classmethod(_timed(ge, "seconds", shared))  # type: ignore[assignment,method-assign]
    Validator.validate = _timed(ge, "validations", Validator.validate)  # type: ignore[method-assign]
    steps = _timed_steps()
    before = _version(job["table"])
    t = time.perf_counter()
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        code = main(["--policy", str(root / "dsr.yml"), "run", *engine])
    spent = time.perf_counter() - t
    steps["verify"] = steps.get("verify", 0.0) - ge["seconds"]  # the first suite pays the GE import
    steps["other"] = spent - ge["seconds"] - sum(steps.values())
    return {"seconds": spent, "ge_seconds": round(ge["seconds"], 3), "exit_code": code,
            "ge_validations_seconds": round(ge["validations"], 3),
            "steps": {k: round(v, 3) for k, v in steps.items()}, **_files_changed(job["table"], before)}


def _timed_steps() -> dict[str, float]:
    """Wrap the run's claim, its step calls and its engine's making to time them inside ``dsr run`` (the run's
    breakdown: claim, each step, the engine (its client's import and session), and what is left: policy, the
    first-sweep check). ``dsr.steps.run`` is the module the run looks its functions up in."""
    import importlib

    run = importlib.import_module("dsr.steps.run")  # the module (``dsr.steps.run`` the attribute is a function)
    spent: dict[str, float] = {}
    call = run.call
    run.call = lambda step, *a, **kw: _timed(spent, step.name, call)(step, *a, **kw)
    run.claim_batch = _timed(spent, "claim", run.claim_batch)
    engines = importlib.import_module("dsr.engines")  # the CLI looks make_engine up when it runs
    engines.make_engine = _timed(spent, "engine", engines.make_engine)  # its import, its session
    return spent


def dsr_run_spark(job: dict[str, Any]) -> dict[str, Any]:
    """The whole ``dsr run --engine spark`` against a Sail Spark Connect server (started here, not timed): the
    Spark engine's run, to set beside ``sail_merge`` (the MERGE alone on the same kind of server)."""
    from pysail.spark import SparkConnectServer

    server = SparkConnectServer(ip="127.0.0.1", port=0)
    server.start(background=True)
    host, port = server.listening_address
    try:
        return dsr_run(job, ("--engine", "spark", "--remote", f"sc://{host}:{port}"))
    finally:
        server.stop()


def dsr_run_remote(job: dict[str, Any]) -> dict[str, Any]:
    """The whole ``dsr run --engine spark --remote`` against the Spark Connect server at ``job["remote"]``, which
    runs in another process (``bench/spark_scale.py``): this process is the dsr process alone, its requests
    filed beforehand (``job["filed"]``)."""
    return dsr_run(job, ("--engine", "spark", "--remote", job["remote"]))


def sail_merge_remote(job: dict[str, Any]) -> dict[str, Any]:
    """The MERGE dsr's erase issues on Spark (``merge_statement``: the K keys as a small DataFrame behind a view,
    restricted to the partitions that hold their rows), alone, through a Spark Connect session on the server at
    ``job["remote"]``; the statement timed, the session and the view not."""
    import os

    import pyarrow as pa
    from pyspark.sql.connect.session import SparkSession

    from dsr.delta.support import DELETE
    from dsr.engines.base import KEY_COLUMN
    from dsr.engines.spark_sql import key_frame, merge_statement

    spark = SparkSession.builder.remote(job["remote"]).config("spark.sql.session.timeZone", "UTC").create()
    days = sorted({rel.split("/")[0].split("=", 1)[1] for rel in job["holding"]})
    key_frame(spark, pa.table({KEY_COLUMN: job["ids"]})).createOrReplaceTempView("__bench_src")
    statement = merge_statement(os.path.abspath(job["table"]), "__bench_src", "user_id", DELETE,
                                partitions=[{"event_date": d} for d in days])
    before = _version(job["table"])
    t = time.perf_counter()
    spark.sql(statement).collect()
    spent = time.perf_counter() - t
    spark.stop()
    return {"seconds": spent, **_files_changed(job["table"], before)}


COMPETITORS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "dsr_erase": dsr_erase, "dsr_verify": dsr_verify, "dsr_run": dsr_run, "dsr_run_spark": dsr_run_spark,
    "dsr_export": dsr_export, "dsr_run_remote": dsr_run_remote, "sail_merge_remote": sail_merge_remote,
    "loop_delete": loop_delete, "delete_in": delete_in, "full_rewrite": full_rewrite, "sail_merge": sail_merge,
    "bound": bound, "export_bound": export_bound, "ge_import": ge_import, "merge_alone": merge_alone,
    "files_floor": files_floor,
}


if __name__ == "__main__":
    name, work = sys.argv[1], Path(sys.argv[2])
    job = json.loads((work / "job.json").read_text(encoding="utf-8"))
    out = COMPETITORS[name](job)
    print(json.dumps({"name": name, **out, "peak_rss_mb": _rss_mb()}))
