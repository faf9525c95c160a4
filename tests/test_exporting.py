"""Export parts and documents (dsr/exports/): bounded open files and memory, atomic documents, cleanup,
permissions, the exports location check — on a local folder and on moto's S3 server."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsr import exports as exporting
from dsr.errors import InputError, StepError
from dsr.exports import PartWriter, finish_documents, remove_run_parts, remove_stale_parts
from dsr.exports import location as exports_location
from tests.moto_s3 import aws_env, moto_server

REPO = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
STAMP = "2025-01-02T03:04:05Z"


def _rows_of(i: int, table: str, n: int) -> list[dict[str, Any]]:
    return [{"user_id": 1000 + i, "table": table, "seq": j, "text": "é\n\t\u2028" * (j % 3)} for j in range(n)]


def _write(exports: str, run_id: str, table: str, plan: dict[str, list[dict[str, Any]]], *, seed: int = 0,
           **kw: Any) -> PartWriter:
    """Write the rows of plan (request id -> rows) interleaved across requests, each request's in order."""
    rng = random.Random(seed)
    queues = {rid: list(rows) for rid, rows in plan.items() if rows}
    with PartWriter(exports, run_id, table, list(plan), **kw) as w:
        while queues:
            rid = rng.choice(sorted(queues))
            w.write(rid, queues[rid].pop(0))
            if not queues[rid]:
                del queues[rid]
    return w


def _expected(rid: str, sid: str, tables: dict[str, dict[str, list[dict[str, Any]]]],
              notes: dict[str, str] | None = None) -> dict[str, Any]:
    return {"schema_version": 1, "request_id": rid, "subject_id": sid, "exported_at": STAMP,
            "tables": {t: plan.get(rid, []) for t, plan in tables.items()}, "notes": notes or {}}


def _all_paths(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


# --- format and streaming -----------------------------------------------------------------------------------


def test_a_document_keeps_its_format(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    row = {"id": 7, "at": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC), "day": dt.date(2024, 5, 6),
           "amount": decimal.Decimal("12.50"), "blob": b"\x00\xff", "x": float("nan"), "tags": [("k", 1)],
           "none": None}
    with PartWriter(ex, "run_1", "events", ["req_a"]) as w:
        w.write("req_a", row)
        w.write("req_a", {"id": 8})
    with PartWriter(ex, "run_1", "users", ["req_a"]):
        pass
    uris = finish_documents(ex, "run_1", [("req_a", "alice")], ["events", "users"], exported_at=NOW,
                            notes={"req_a": {"users": "uncastable"}})
    assert uris == {"req_a": str(tmp_path / "exports" / "req_a.json")}
    assert w.rows == {"req_a": 2}
    assert Path(uris["req_a"]).read_text(encoding="utf-8") == (
        '{"schema_version":1,"request_id":"req_a","subject_id":"alice","exported_at":"2025-01-02T03:04:05Z",\n'
        '"tables": {\n'
        ' "events": [\n'
        '  {"id":7,"at":"2024-05-06T07:08:09Z","day":"2024-05-06","amount":"12.50","blob":"AP8=","x":"nan",'
        '"tags":[["k",1]],"none":null},\n'
        '  {"id":8}],\n'
        ' "users": []\n'
        '},\n'
        '"notes": {"users":"uncastable"}}\n'
    )


@pytest.mark.parametrize(("buffer_bytes", "fan_in"), [(exporting.BUFFER_BYTES, exporting.FAN_IN), (300, 2), (1, 3)])
def test_rows_come_back_per_request_in_scan_order_however_often_they_spill(
    tmp_path: Path, buffer_bytes: int, fan_in: int
) -> None:
    ex = str(tmp_path / "exports")
    reqs = [(f"req_{i:03d}", f"subject {i}") for i in range(40)]
    tables: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for k, table in enumerate(["events", "orders", "web events"]):
        plan = {rid: _rows_of(i, table, (i + k) % 5) for i, (rid, _) in enumerate(reqs)}
        w = _write(ex, "run_1", table, plan, seed=k, buffer_bytes=buffer_bytes, fan_in=fan_in)
        assert w.rows == {rid: len(rows) for rid, rows in plan.items()}
        tables[table] = plan
        folder = tmp_path / "exports" / "_parts" / "run_1" / ("web%20events" if table == "web events" else table)
        assert sorted(p.name for p in folder.iterdir())[-1] == "manifest.json"
        assert len(list(folder.iterdir())) <= 2  # one merged part (none if no rows) and the manifest
    uris = finish_documents(ex, "run_1", list(reversed(reqs)), list(tables), exported_at=NOW,
                            notes={"req_001": {"orders": "n"}})
    assert list(uris) == sorted(uris) and len(uris) == len(reqs)
    for rid, sid in reqs:
        doc = json.loads(Path(uris[rid]).read_text(encoding="utf-8"))
        assert doc == _expected(rid, sid, tables, {"orders": "n"} if rid == "req_001" else None)


def test_finish_takes_any_subset_and_refuses_uncovered_requests_or_missing_tables(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    plan = {f"req_{i}": _rows_of(i, "events", 2) for i in range(6)}
    _write(ex, "run_1", "events", plan, buffer_bytes=100, fan_in=2)
    some = [("req_1", "s1"), ("req_4", "s4")]
    uris = finish_documents(ex, "run_1", some, ["events"], exported_at=NOW)
    assert sorted(p.name for p in (tmp_path / "exports").glob("*.json")) == ["req_1.json", "req_4.json"]
    assert json.loads(Path(uris["req_4"]).read_text())["tables"]["events"] == plan["req_4"]

    with pytest.raises(StepError, match=r"parts of table 'events' for run run_1 do not cover request req_9"):
        finish_documents(ex, "run_1", [("req_0", "s0"), ("req_9", "s9")], ["events"], exported_at=NOW)
    with pytest.raises(StepError, match=r"table 'users' for run run_1 are missing or incomplete"):
        finish_documents(ex, "run_1", [("req_0", "s0")], ["events", "users"], exported_at=NOW)
    with pytest.raises(StepError, match=r"for run run_2 are missing"):
        finish_documents(ex, "run_2", [("req_0", "s0")], ["events"], exported_at=NOW)
    assert not (tmp_path / "exports" / "req_0.json").exists()  # refused before any document is written
    assert finish_documents(ex, "run_1", [], ["events", "users"], exported_at=NOW) == {}


def test_a_failed_export_of_a_table_leaves_no_parts_and_a_retry_replaces_earlier_ones(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    folder = tmp_path / "exports" / "_parts" / "run_1" / "events"
    with pytest.raises(RuntimeError), PartWriter(ex, "run_1", "events", ["req_a"], buffer_bytes=1) as w:
        w.write("req_a", {"n": 1})
        raise RuntimeError("scan failed")
    assert not folder.exists()
    with pytest.raises(StepError, match="missing or incomplete"):
        finish_documents(ex, "run_1", [("req_a", "a")], ["events"], exported_at=NOW)

    _write(ex, "run_1", "events", {"req_a": [{"n": 1}, {"n": 2}], "req_b": [{"n": 3}]}, buffer_bytes=1)
    _write(ex, "run_1", "events", {"req_a": [{"n": 4}], "req_b": []})  # the task ran again
    uris = finish_documents(ex, "run_1", [("req_a", "a"), ("req_b", "b")], ["events"], exported_at=NOW)
    assert json.loads(Path(uris["req_a"]).read_text())["tables"]["events"] == [{"n": 4}]
    assert json.loads(Path(uris["req_b"]).read_text())["tables"]["events"] == []


def test_inconsistent_parts_fail_without_a_half_document(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    _write(ex, "run_1", "events", {f"req_{i}": _rows_of(i, "events", 3) for i in range(4)})
    manifest = tmp_path / "exports" / "_parts" / "run_1" / "events" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["rows"]["req_2"] += 1
    manifest.write_text(json.dumps(m))
    (tmp_path / "exports" / "req_2.json").write_text('{"old": true}')  # a document from an earlier attempt
    with pytest.raises(StepError, match=r"inconsistent for request req_2: 4 row\(s\) expected, 3 found"):
        finish_documents(ex, "run_1", [(f"req_{i}", f"s{i}") for i in range(4)], ["events"], exported_at=NOW)
    names = sorted(p.name for p in (tmp_path / "exports").iterdir())
    assert names == ["_parts", "req_0.json", "req_1.json", "req_2.json"]  # no .tmp; req_3 not reached
    assert json.loads((tmp_path / "exports" / "req_2.json").read_text()) == {"old": True}  # untouched
    assert json.loads((tmp_path / "exports" / "req_1.json").read_text())["tables"]["events"] == _rows_of(
        1, "events", 3)


def test_ids_that_are_not_file_names_are_refused_without_echoing_them(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    for bad in ["../x", "a/b", "", ".hidden", "alice@example.com"]:
        with pytest.raises(ValueError, match="invalid request id") as err:
            PartWriter(ex, "run_1", "events", [bad])
        assert bad not in str(err.value) or not bad
        with pytest.raises(ValueError, match="invalid run id"):
            PartWriter(ex, bad, "events", ["req_a"])
    with pytest.raises(ValueError, match="invalid request id"):
        finish_documents(ex, "run_1", [("a/../b", "s")], [], exported_at=NOW)
    with pytest.raises(ValueError, match="listed twice"):
        finish_documents(ex, "run_1", [("req_a", "s"), ("req_a", "t")], [], exported_at=NOW)
    assert not (tmp_path / "exports").exists() or not any((tmp_path / "exports").rglob("*.json"))
    with PartWriter(ex, "run_1", "../../evil", ["req_a"]) as w:  # a table name is never a path
        w.write("req_a", {"n": 1})
    assert [p.name for p in (tmp_path / "exports" / "_parts" / "run_1").iterdir()] == ["%2E.%2F..%2Fevil"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports"]


def test_an_airflow_batch_id_with_a_dot_is_a_run_id(tmp_path: Path) -> None:
    """The DAG's batch id is Airflow's run id made safe: it keeps the '.' before the microseconds."""
    ex = str(tmp_path / "exports")
    run = "af_manual__2026-11-26T02_47_37.701482_00_00"
    with PartWriter(ex, run, "events", ["req_a"]) as w:
        w.write("req_a", {"n": 1})
    uris = finish_documents(ex, run, [("req_a", "s")], ["events"], exported_at=NOW)
    assert json.loads(Path(uris["req_a"]).read_text(encoding="utf-8"))["tables"] == {"events": [{"n": 1}]}
    remove_stale_parts(ex, [run])
    assert (tmp_path / "exports" / "_parts" / run).is_dir()
    remove_run_parts(ex, run)
    assert not (tmp_path / "exports" / "_parts").exists()
    with pytest.raises(ValueError, match="invalid request id"):
        PartWriter(ex, run, "events", ["req.a"])  # request ids stay without dots


# --- bounded open files ---------------------------------------------------------------------------------------

_MANY = textwrap.dedent("""
    import datetime as dt, json, os, random, resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 256 if hard == resource.RLIM_INFINITY else min(256, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    from dsr import exports as exporting

    exports, n = sys.argv[1], int(sys.argv[2])
    reqs = [(f"req_{i:05d}", f"subject-{i}") for i in range(n)]
    tables = ["events", "orders", "users"]

    def rows(i, k, t):
        return [{"user_id": i, "table": t, "seq": j, "text": "é" * (i % 5)} for j in range((i + k) % 4)]

    fds = lambda: len(os.listdir("/proc/self/fd"))
    start = fds()
    order = list(range(n))
    rng = random.Random(7)
    for k, t in enumerate(tables):
        rng.shuffle(order)
        with exporting.PartWriter(exports, "run_x", t, [r for r, _ in reqs], buffer_bytes=64 << 10) as w:
            for j in range(3):  # a scan: each request's rows in order, requests interleaved
                for i in order:
                    mine = rows(i, k, t)
                    if j < len(mine):
                        w.write(reqs[i][0], mine[j])
        assert w.rows == {rid: len(rows(i, k, t)) for i, (rid, _) in enumerate(reqs)}
    uris = exporting.finish_documents(exports, "run_x", reqs, tables,
                                      exported_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC),
                                      notes={"req_00001": {"users": "x"}})
    after = fds()
    bad = []
    for i, (rid, sid) in enumerate(reqs):
        with open(uris[rid], encoding="utf-8") as f:
            doc = json.load(f)
        want = {"schema_version": 1, "request_id": rid, "subject_id": sid, "exported_at": "2025-01-02T00:00:00Z",
                "tables": {t: rows(i, k, t) for k, t in enumerate(tables)},
                "notes": {"users": "x"} if i == 1 else {}}
        if doc != want:
            bad.append(rid)
    print(json.dumps({"limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "documents": len(uris),
                      "bad": bad[:5], "start_fds": start, "after_fds": after}))
""")


def test_ten_thousand_exports_under_ulimit_256(tmp_path: Path) -> None:
    """The writers and the finish hold a bounded number of files open: 10,000 requests under ulimit -n 256."""
    ex = tmp_path / "exports"
    n = 10_000
    proc = subprocess.run([sys.executable, "-c", _MANY, str(ex), str(n)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["limit"] == 256
    assert out["documents"] == n and out["bad"] == []
    assert out["after_fds"] == out["start_fds"]  # nothing left open
    names = os.listdir(ex)
    assert len(names) == n + 1 and "_parts" in names and not [x for x in names if x.endswith(".tmp")]
    for t in ("events", "orders", "users"):  # spilled many chunks, merged into one part
        part, manifest = sorted(os.listdir(ex / "_parts" / "run_x" / t))
        assert manifest == "manifest.json" and part.endswith(".jsonl") and int(part[:6]) > 16
    exporting.remove_run_parts(str(ex), "run_x")
    assert sorted(os.listdir(ex)) == sorted(x for x in names if x != "_parts")


# --- cleanup --------------------------------------------------------------------------------------------------


def _three_runs(ex: str) -> None:
    for run in ("run_a", "run_b", "run_c"):
        _write(ex, run, "events", {"req_1": [{"n": 1}], "req_2": [{"n": 2}]}, buffer_bytes=1)
        _write(ex, run, "users", {"req_1": [{"n": 1}], "req_2": []})
    finish_documents(ex, "run_b", [("req_1", "s1"), ("req_2", "s2")], ["events", "users"], exported_at=NOW)


def test_remove_run_parts_and_stale_parts_locally(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    ex = str(root)
    _three_runs(ex)
    for name in ("req_7.json.run_a.tmp", "req_8.json.run_b.tmp", "req_9.json.run_c.tmp", "req_6.json.tmp"):
        (root / name).write_text("{")  # a run died while writing documents
    docs = {p.name: p.read_bytes() for p in root.glob("*.json")}
    assert sorted(docs) == ["req_1.json", "req_2.json"]

    assert exporting.remove_stale_parts(ex, ["run_b"]) == 2
    assert sorted(os.listdir(root / "_parts")) == ["run_b"]
    assert sorted(p.name for p in root.glob("*.tmp")) == ["req_6.json.tmp", "req_8.json.run_b.tmp"]
    assert {p.name: p.read_bytes() for p in root.glob("*.json")} == docs

    assert exporting.remove_stale_parts(ex, ["run_b"]) == 0
    exporting.remove_run_parts(ex, "run_b")
    assert not (root / "_parts").exists()  # the empty _parts folder is tidied too
    exporting.remove_run_parts(ex, "run_b")  # idempotent
    assert exporting.remove_stale_parts(ex, []) == 0
    assert sorted(os.listdir(root)) == ["req_1.json", "req_2.json"]  # no live run: the old-style .tmp goes too
    assert exporting.remove_stale_parts(str(tmp_path / "missing"), []) == 0
    assert not (tmp_path / "missing").exists()


# --- permissions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_files_are_0600_and_folders_0700_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "exports"  # exists, world-readable, holds a world-readable earlier document
    root.mkdir()
    (root / "req_1.json").write_text("{}")
    os.chmod(root, 0o755)
    os.chmod(root / "req_1.json", 0o644)
    fresh = tmp_path / "fresh"  # created by dsr, with the folders below it
    old = os.umask(umask)
    try:
        ex = str(root)
        _write(ex, "run_1", "events", {"req_1": _rows_of(1, "events", 30), "req_2": _rows_of(2, "events", 5)},
               buffer_bytes=200, fan_in=2)
        _write(ex, "run_1", "web/events", {"req_1": [], "req_2": [{"n": 1}]})
        finish_documents(ex, "run_1", [("req_1", "s1"), ("req_2", "s2")], ["events", "web/events"],
                         exported_at=NOW)
        _write(str(fresh / "deeper" / "exports"), "run_2", "events", {"req_3": [{"n": 1}]})
        finish_documents(str(fresh / "deeper" / "exports"), "run_2", [("req_3", "s3")], ["events"],
                         exported_at=NOW)
    finally:
        os.umask(old)
    assert (root / "_parts" / "run_1" / "web%2Fevents" / "manifest.json").is_file()
    paths = [*_all_paths(root), fresh, *_all_paths(fresh)]
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in paths}
    assert modes == {str(p.relative_to(tmp_path)): "0o700" if p.is_dir() else "0o600" for p in paths}
    assert len([p for p in paths if p.is_file()]) == 9  # 3 documents, 3 parts, 3 manifests
    assert stat.S_IMODE(root.stat().st_mode) == 0o755  # an existing exports folder is left as it is


# --- subject ids never in paths ---------------------------------------------------------------------------


SUBJECTS = ["alice@example.com", "subject-4711", "Zoë Ünïcode", "../../etc/passwd", "run_1", "events"]


def test_paths_never_hold_subject_ids(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    reqs = [(f"req_{i}", sid) for i, sid in enumerate(SUBJECTS[:4])]
    for t in ("events", "users"):
        _write(ex, "run_9", t, {rid: [{"user_id": sid, "n": 1}] for rid, sid in reqs}, buffer_bytes=1, fan_in=2)
    uris = finish_documents(ex, "run_9", reqs, ["events", "users"], exported_at=NOW)
    for rid, sid in reqs:
        assert json.loads(Path(uris[rid]).read_text())["subject_id"] == sid
        assert sid not in uris[rid]
    paths = [str(p.relative_to(tmp_path)) for p in _all_paths(tmp_path / "exports")]
    assert any("_parts" in p for p in paths)
    for sid in SUBJECTS[:4]:
        assert not [p for p in paths if sid in p]
    for p in paths:  # every path component is a request id, run id, table name, counter or fixed name
        for part in Path(p).parts:
            assert part in {"exports", "_parts", "run_9", "events", "users", "manifest.json"} or part.startswith(
                "req_") or part[:6].isdigit(), part


# --- the exports location -----------------------------------------------------------------------------------


def test_check_location_local(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    exporting.check_location(str(tmp_path / "exists"))
    exporting.check_location(str(tmp_path / "not" / "yet" / "there"))  # nearest existing ancestor is writable
    exporting.check_location(os.path.relpath(tmp_path / "exists"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]  # nothing created
    assert list((tmp_path / "exists").iterdir()) == []

    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    cases = {
        str(tmp_path / "file"): "exists and is not a directory",
        str(tmp_path / "file" / "exports"): f"cannot be created: {tmp_path / 'file'} is not a directory",
        str(tmp_path / "dangling"): "is a broken symbolic link",
        "gs://bucket/exports": "unsupported scheme 'gs://'",
        "file:///tmp/exports": "unsupported scheme 'file://'",
        "s3:///exports": "no bucket",
        "": "exports location is empty",
    }
    for location, problem in cases.items():
        with pytest.raises(InputError) as err:
            exporting.check_location(location)
        msg = str(err.value)
        assert problem in msg and "\n" not in msg and (not location or repr(location) in msg), msg


def _checks(paths: list[str], uid: int | None) -> list[str]:
    """check_location's verdict on each path, as uid (in a forked child) or as ourselves."""
    def run() -> list[str]:
        out = []
        for p in paths:
            try:
                exporting.check_location(p)
                out.append("ok")
            except InputError as e:
                out.append(str(e))
        return out

    if uid is None:
        return run()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.write(w, json.dumps(run()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return list(json.loads(data))


def test_check_location_refuses_a_folder_it_cannot_write() -> None:
    base = Path(tempfile.mkdtemp(prefix="dsr-ro-"))  # not under tmp_path: that is private to root
    try:
        os.chmod(base, 0o755)
        ro = base / "ro"
        ro.mkdir(mode=0o555)
        os.chmod(ro, 0o555)
        # root writes anywhere: ask as nobody
        lines = _checks([str(ro), str(ro / "exports"), str(ro / "a" / "b")], 65534 if os.geteuid() == 0 else None)
    finally:
        shutil.rmtree(base)
    assert lines == [
        f"exports location {str(ro)!r}: the directory is not writable",
        f"exports location {str(ro / 'exports')!r}: cannot be created: {ro} is not writable",
        f"exports location {str(ro / 'a' / 'b')!r}: cannot be created: {ro} is not writable",
    ]


# --- S3 (moto) ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with a bucket 'exp'."""
    with moto_server("exp") as endpoint:
        yield endpoint


@pytest.fixture()
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client on the moto server (AWS_* set for dsr)."""
    import boto3

    aws_env(monkeypatch, s3_endpoint)
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


def _keys(s3: Any, prefix: str) -> dict[str, int]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="exp", Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _real(keys: dict[str, int]) -> list[str]:
    """Keys other than pyarrow's empty folder markers ('a/b/')."""
    return sorted(k for k, size in keys.items() if not (k.endswith("/") and size == 0))


@pytest.mark.s3
def test_s3_documents_and_cleanup(s3: Any) -> None:
    ex = "s3://exp/docs"
    reqs = [(f"req_{i:02d}", sid) for i, sid in enumerate(SUBJECTS)]
    tables: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for k, t in enumerate(["events", "users"]):
        plan = {rid: _rows_of(i, t, (i + k) % 4) for i, (rid, _) in enumerate(reqs)}
        _write(ex, "run_b", t, plan, seed=k, buffer_bytes=300, fan_in=2)
        tables[t] = plan
    _write("s3a://exp/docs", "run_a", "events", {"req_00": [{"n": 1}]})  # a dead run (s3a:// is the same place)
    uris = finish_documents(ex, "run_b", reqs, ["events", "users"], exported_at=NOW)
    assert uris == {rid: f"s3://exp/docs/{rid}.json" for rid, _ in reqs}
    for rid, sid in reqs:
        body = s3.get_object(Bucket="exp", Key=f"docs/{rid}.json")["Body"].read()
        assert json.loads(body) == _expected(rid, sid, tables)
    keys = _real(_keys(s3, "docs/"))
    assert not [k for k in keys if any(sid in k for sid in SUBJECTS[:4])]
    assert sorted(k for k in keys if "/_parts/" not in k) == sorted(f"docs/{rid}.json" for rid, _ in reqs)
    assert {k.split("/")[2] for k in keys if "/_parts/" in k} == {"run_a", "run_b"}

    assert exporting.remove_stale_parts(ex, ["run_b", "run_z"]) == 1
    assert {k.split("/")[2] for k in _real(_keys(s3, "docs/_parts/"))} == {"run_b"}
    exporting.remove_run_parts(ex, "run_b")
    exporting.remove_run_parts(ex, "run_b")
    assert _real(_keys(s3, "docs/_parts/")) == []
    assert sorted(_real(_keys(s3, "docs/"))) == sorted(f"docs/{rid}.json" for rid, _ in reqs)
    assert exporting.remove_stale_parts(ex, []) == 0


@pytest.mark.s3
def test_s3_a_failed_document_leaves_no_object(s3: Any) -> None:
    ex = "s3://exp/failing"
    _write(ex, "run_1", "events", {f"req_{i}": _rows_of(i, "events", 2) for i in range(3)}, buffer_bytes=1)
    key = "failing/_parts/run_1/events/manifest.json"
    m = json.loads(s3.get_object(Bucket="exp", Key=key)["Body"].read())
    m["rows"]["req_1"] = 5
    s3.put_object(Bucket="exp", Key=key, Body=json.dumps(m).encode())
    with pytest.raises(StepError, match="inconsistent for request req_1"):
        finish_documents(ex, "run_1", [(f"req_{i}", f"s{i}") for i in range(3)], ["events"], exported_at=NOW)
    assert [k for k in _real(_keys(s3, "failing/")) if "_parts" not in k] == ["failing/req_0.json"]
    exporting.remove_run_parts(ex, "run_1")
    assert _real(_keys(s3, "failing/")) == ["failing/req_0.json"]


@pytest.mark.s3
@pytest.mark.timeout(60)
def test_check_location_s3(s3: Any) -> None:
    exporting.check_location("s3://exp")
    exporting.check_location("s3://exp/new/prefix")
    exporting.check_location("s3a://exp/docs")
    assert _real(_keys(s3, "new/")) == [] and _keys(s3, "new") == {}  # nothing written
    for location in ("s3://missing-bucket/exports", "s3a://missing-bucket"):
        with pytest.raises(InputError) as err:
            exporting.check_location(location)
        assert str(err.value) == f"exports location {location!r}: bucket 'missing-bucket' does not exist"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.s3
@pytest.mark.timeout(30)  # fails fast: one attempt, short timeouts (pyarrow's defaults retry for long)
def test_check_location_s3_unreachable_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_env(monkeypatch, f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    with pytest.raises(InputError) as err:
        exporting.check_location("s3://exp/exports")
    msg = str(err.value)
    assert msg.startswith("exports location 's3://exp/exports': S3 cannot be reached or refused access: ")
    assert "\n" not in msg

    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        aws_env(monkeypatch, f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setattr(exports_location, "CHECK_REQUEST_TIMEOUT", 1.0)
        with pytest.raises(InputError, match="S3 cannot be reached or refused access"):
            exporting.check_location("s3://exp/exports")
