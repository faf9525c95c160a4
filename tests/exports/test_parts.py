"""Export part files (dsr/exports/parts.py): PartWriter's spills and merges keep each request's rows in scan
order, a failed table leaves no parts, and writers hold a bounded number of files open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dsr import exports as exporting
from dsr.errors import StepError
from dsr.exports import PartWriter, finish_documents
from tests.exports.conftest import NOW, _expected, _rows_of, _write
from tests.packages import document

REPO = Path(__file__).resolve().parents[2]

# --- spills and merges --------------------------------------------------------------------------------------


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
        doc = document(uris[rid])
        assert doc == _expected(rid, sid, tables, {"orders": "n"} if rid == "req_001" else None)


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
    assert document(uris["req_a"])["tables"]["events"] == [{"n": 4}]
    assert document(uris["req_b"])["tables"]["events"] == []


# --- bounded open files ---------------------------------------------------------------------------------------

_MANY = textwrap.dedent("""
    import datetime as dt, json, os, random, resource, sys, zipfile
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
        with zipfile.ZipFile(uris[rid]) as z:
            doc = json.loads(z.read("export.json"))
        want = {"schema_version": 2, "request_id": rid, "subject_id": sid,
                "identifiers": [{"kind": "subject", "value": sid}], "exported_at": "2025-01-02T00:00:00Z",
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
