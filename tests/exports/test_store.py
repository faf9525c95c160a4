"""Export storage, ids and encoding (dsr/exports/store.py): json_value, the ids and names allowed in paths
(never subject ids), and modes 0600/0700 whatever the umask."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import stat
from pathlib import Path

import pytest

from dsr.exports import PartWriter, finish_documents, remove_run_parts, remove_stale_parts
from dsr.exports.store import json_value
from tests.exports.conftest import NOW, SUBJECTS, _rows_of, _write
from tests.packages import document


def _all_paths(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


# --- JSON values --------------------------------------------------------------------------------------------


def test_json_value_encodes_each_type_as_documented() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    cases: list[tuple[object, object]] = [
        (None, None), (True, True), (7, 7), (-2**63, -2**63), ("é\n", "é\n"), (1.5, 1.5),
        (float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf"),
        (b"\x00\xff\x10", "AP8Q"), (bytearray(b"\x00\xff"), "AP8="), (memoryview(b"ab"), "YWI="), (b"", ""),
        (dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC), "2024-05-06T07:08:09Z"),
        (dt.datetime(2024, 5, 6, 7, 8, 9, 120000, tzinfo=cet), "2024-05-06T06:08:09.120000Z"),
        (dt.datetime(2024, 5, 6, 7, 8, 9), "2024-05-06T07:08:09"),
        (dt.date(2024, 2, 29), "2024-02-29"), (dt.time(23, 59, 1), "23:59:01"),
        (dt.timedelta(minutes=1, milliseconds=500), 60.5),
        (decimal.Decimal("12.30"), "12.30"), (decimal.Decimal("-0.001"), "-0.001"),
        ([1, None, b"\xff"], [1, None, "/w=="]),
        ([("k", 1), ("b", b"\x01")], [["k", 1], ["b", "AQ=="]]),  # a map as pyarrow gives it
        ({"a": {"at": dt.date(2024, 1, 2), "n": decimal.Decimal("1.0")}, 3: [float("nan")]},
         {"a": {"at": "2024-01-02", "n": "1.0"}, "3": ["nan"]}),
    ]
    for value, want in cases:
        assert json_value(value) == want, value


# --- ids and names in paths ---------------------------------------------------------------------------------


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
    assert not (tmp_path / "exports").exists() or not any((tmp_path / "exports").rglob("*.zip"))
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
    assert document(uris["req_a"])["tables"] == {"events": [{"n": 1}]}
    remove_stale_parts(ex, [run])
    assert (tmp_path / "exports" / "_parts" / run).is_dir()
    remove_run_parts(ex, run)
    assert not (tmp_path / "exports" / "_parts").exists()
    with pytest.raises(ValueError, match="invalid request id"):
        PartWriter(ex, run, "events", ["req.a"])  # request ids stay without dots


# --- permissions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_files_are_0600_and_folders_0700_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "exports"  # exists, world-readable, holds a world-readable earlier document
    root.mkdir()
    (root / "req_1.zip").write_text("{}")
    os.chmod(root, 0o755)
    os.chmod(root / "req_1.zip", 0o644)
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
    assert len([p for p in paths if p.is_file()]) == 9  # 3 packages, 3 parts, 3 manifests
    assert stat.S_IMODE(root.stat().st_mode) == 0o755  # an existing exports folder is left as it is


# --- subject ids never in paths ---------------------------------------------------------------------------


def test_paths_never_hold_subject_ids(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    reqs = [(f"req_{i}", sid) for i, sid in enumerate(SUBJECTS[:4])]
    for t in ("events", "users"):
        _write(ex, "run_9", t, {rid: [{"user_id": sid, "n": 1}] for rid, sid in reqs}, buffer_bytes=1, fan_in=2)
    uris = finish_documents(ex, "run_9", reqs, ["events", "users"], exported_at=NOW)
    for rid, sid in reqs:
        assert document(uris[rid])["subject_id"] == sid
        assert sid not in uris[rid]
    paths = [str(p.relative_to(tmp_path)) for p in _all_paths(tmp_path / "exports")]
    assert any("_parts" in p for p in paths)
    for sid in SUBJECTS[:4]:
        assert not [p for p in paths if sid in p]
    for p in paths:  # every path component is a request id, run id, table name, counter or fixed name
        for part in Path(p).parts:
            assert part in {"exports", "_parts", "run_9", "events", "users", "manifest.json"} or part.startswith(
                "req_") or part[:6].isdigit(), part
