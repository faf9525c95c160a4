"""What a writer outside dsr sees when it commits beside a purge (issue 21, point 11; README "Crash safety").

A purge replaces the commits before its point by stubs (dsr/delta/logcut.py). Measured here on real writers:

* a delta-rs appender whose snapshot is older than the cut gets ``CommitFailedError: ... Protocol changed``: a
  conflict, nothing written; the same append from a fresh snapshot then lands (never a commit written into a
  hole below the checkpoint, where no reader would see it);
* time travel to a purged version fails loudly, never returns a table missing rows;
* appenders running in a loop beside a purge (delta-rs, and Spark through Sail) lose no acknowledged commit:
  every append that returned is in the table exactly once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from dsr.delta import maintenance
from tests import lakes


def _table(path: Path) -> int:
    """A table with an erased person: returns the erase commit's version."""
    write_deltalake(str(path), pa.table({"user_id": ["w-gone-1", "w-keep-2"], "n": [0, 0]}))
    for i in range(1, 4):
        write_deltalake(str(path), pa.table({"user_id": ["w-gone-1", "w-keep-2"], "n": [i, i]}), mode="append")
    DeltaTable(str(path)).delete("user_id = 'w-gone-1'")
    return int(DeltaTable(str(path)).version())


def test_a_stale_delta_rs_appender_gets_a_conflict_and_its_retry_lands(tmp_path: Path) -> None:
    path = tmp_path / "t"
    erase = _table(path)
    stale = DeltaTable(str(path), version=erase - 2)  # loaded before the erase, committing after the purge
    maintenance.purge_through(str(path), erase)
    with pytest.raises(CommitFailedError, match="Protocol changed"):
        write_deltalake(stale, pa.table({"user_id": ["w-late-3"], "n": [9]}), mode="append")
    assert "w-late-3" not in {r["user_id"] for r in lakes.rows(path)}  # nothing half-written
    write_deltalake(str(path), pa.table({"user_id": ["w-late-3"], "n": [9]}), mode="append")  # the retry
    assert sorted(r["user_id"] for r in lakes.rows(path)).count("w-late-3") == 1


def test_time_travel_to_a_purged_version_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "t"
    erase = _table(path)
    maintenance.purge_through(str(path), erase)
    for version in range(erase):
        with pytest.raises(Exception, match=r"(?i)metadata|feature|dsrPurgedHistory"):
            DeltaTable(str(path), version=version).to_pyarrow_table()
    assert {r["user_id"] for r in lakes.rows(path, erase)} == {"w-keep-2"}


def _loop(write: Any, name: str, stop: threading.Event, acked: list[str], refused: list[str]) -> None:
    """Append one marked row after another until told to stop: acked rows returned, refused ones raised."""
    i = 0
    while not stop.is_set() or i < 3:
        marker = f"{name}-{i:03d}"
        try:
            write(marker)
            acked.append(marker)
        except Exception as exc:  # a writer's conflict: recorded; the loop goes on
            refused.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        i += 1


def _purge_beside(path: Path, writers: dict[str, Any]) -> tuple[list[str], list[str]]:
    erase = _table(path)
    stop = threading.Event()
    acked: list[str] = []
    refused: list[str] = []
    threads = [threading.Thread(target=_loop, args=(w, n, stop, acked, refused)) for n, w in writers.items()]
    for t in threads:
        t.start()
    try:
        maintenance.purge_through(str(path), erase)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    return acked, refused


def test_delta_rs_appenders_beside_a_purge_lose_no_acknowledged_commit(tmp_path: Path) -> None:
    path = tmp_path / "t"

    def append(marker: str) -> None:
        write_deltalake(str(path), pa.table({"user_id": [marker], "n": [1]}), mode="append")

    acked, refused = _purge_beside(path, {"rs-a": append, "rs-b": append})
    found = [r["user_id"] for r in lakes.rows(path) if r["user_id"].startswith("rs-")]
    assert sorted(found) == sorted(acked) and len(found) == len(set(found))
    assert all("CommitFailed" in r or "conflict" in r.lower() for r in refused), refused


@pytest.mark.spark
def test_spark_appenders_beside_a_purge_lose_no_acknowledged_commit(tmp_path: Path, spark_connect: Any) -> None:
    path = tmp_path / "t"
    lock = threading.Lock()  # one Spark Connect session: its requests one at a time, as one job would send them

    def append(marker: str) -> None:
        with lock:
            spark_connect.createDataFrame([(marker, 1)], "user_id string, n bigint").write.format("delta") \
                .mode("append").save(str(path))

    acked, _refused = _purge_beside(path, {"sail": append})
    found = [r["user_id"] for r in lakes.rows(path) if r["user_id"].startswith("sail-")]
    assert sorted(found) == sorted(acked) and len(found) == len(set(found))
    assert spark_connect.read.format("delta").load(str(path)).count() == len(lakes.rows(path))
