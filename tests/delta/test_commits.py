"""Unit tests of ``dsr.delta.commits``: ``column_stats``, ``CommitActions`` and ``commit_actions``, ``live_files``
and ``history`` — what verification reads from a table's Delta log.

Tables are real Delta tables under tmp_path (written with ``tests.lakes`` and deltalake's own operations, or a
vendored table dsr did not write, copied there). Expectations are literals, the ``_delta_log`` JSON read directly
with ``json``, or rows read back with ``lakes.rows``: never the module under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dsr.delta import commits
from dsr.delta.commits import ColumnStats, CommitActions
from dsr.errors import TableError
from tests import lakes
from tests import real_tables as rt

DV_TABLE = "log-replay-dv-key-cases"
MAPPED = ["data-skipping-basic-stats-all-types-columnmapping-name",
          "data-skipping-basic-stats-all-types-columnmapping-id"]


def _log(path: Path, version: int) -> list[dict[str, Any]]:
    """The actions of one commit, read straight from its JSON log entry."""
    text = (path / "_delta_log" / f"{version:020d}.json").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _paths(path: Path, version: int, kind: str) -> list[tuple[str, bool]]:
    return [(a[kind]["path"], bool(a[kind].get("deletionVector"))) for a in _log(path, version) if kind in a]


def _replayed(path: Path, version: int) -> set[str]:
    """Live file paths at version by replaying the JSON commits 0..version (within a commit, removes before adds:
    a file given a new deletion vector is removed and re-added in the same commit)."""
    live: set[str] = set()
    for v in range(version + 1):
        actions = _log(path, v)
        live -= {a["remove"]["path"] for a in actions if "remove" in a}
        live |= {a["add"]["path"] for a in actions if "add" in a}
    return live


def _copy(name: str, tmp_path: Path) -> Path:
    source = rt.VENDORED / name
    if not (source / "_delta_log").is_dir():
        pytest.skip(f"vendored table {name} is not present")
    return Path(shutil.copytree(source, tmp_path / name))


@pytest.fixture
def people(tmp_path: Path) -> Path:
    """v0: 3 rows (1 NULL user_id), v1: 2 rows (1 NULL user_id), each append one file."""
    path = tmp_path / "people"
    lakes.write_table(path, {"user_id": ["u1", None, "u3"], "n": [1, 2, 3]})
    lakes.write_table(path, {"user_id": [None, "u5"], "n": [4, 5]})
    return path


@pytest.fixture
def parted(tmp_path: Path) -> Path:
    """Partitioned by k, whose values need escaping in paths (space, slash, non-ASCII, colon)."""
    path = tmp_path / "parted"
    lakes.write_table(path, {"k": ["a b", "c/d", "é", "x:y", "a b"], "v": [1, 2, 3, 4, 5]}, partition_by=["k"])
    return path


# --- CommitActions' derived counts ----------------------------------------------------------------------------


def test_commit_actions_counts_tell_dv_marks_rewrites_and_new_files_apart() -> None:
    c = CommitActions(
        version=3,
        adds=(("kept.parquet", True), ("new.parquet", False), ("also-new.parquet", False)),
        removes=(("kept.parquet", False), ("gone.parquet", False)),
        cdc_files=0, operation="DELETE",
    )
    assert c.dv_marked == 1  # kept.parquet: removed and re-added with a deletion vector
    assert c.files_rewritten == 1  # gone.parquet
    assert c.files_added == 2


def test_commit_actions_counts_of_an_append_and_of_a_readd_without_dv() -> None:
    append = CommitActions(1, (("a.parquet", False), ("b.parquet", False)), (), 0, "WRITE")
    assert (append.dv_marked, append.files_rewritten, append.files_added) == (0, 0, 2)
    readd = CommitActions(2, (("a.parquet", False),), (("a.parquet", False),), 0, None)
    assert (readd.dv_marked, readd.files_rewritten, readd.files_added) == (0, 0, 0)


# --- column_stats ---------------------------------------------------------------------------------------------


def test_column_stats_sums_records_and_non_nulls_over_files(people: Path) -> None:
    assert commits.column_stats(str(people), "user_id") == ColumnStats(files=2, records=5, non_null=3)
    assert commits.column_stats(str(people), "n") == ColumnStats(files=2, records=5, non_null=5)


def test_column_stats_at_an_older_version(people: Path) -> None:
    assert commits.column_stats(str(people), "user_id", 0) == ColumnStats(files=1, records=3, non_null=2)


def test_column_stats_of_an_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    DeltaTable.create(str(path), schema=pa.schema([pa.field("user_id", pa.string())]))
    assert commits.column_stats(str(path), "user_id") == ColumnStats(0, 0, 0)


def test_column_stats_of_a_partition_column_has_no_null_count(parted: Path) -> None:
    assert commits.column_stats(str(parted), "k") == ColumnStats(files=4, records=5, non_null=None)
    assert commits.column_stats(str(parted), "v") == ColumnStats(files=4, records=5, non_null=5)


def test_column_stats_without_statistics_for_the_column(tmp_path: Path) -> None:
    path = tmp_path / "one_indexed"
    lakes.write_table(path, {"a": ["x", None, "z"], "b": ["y", None, None]},
                      configuration={"delta.dataSkippingNumIndexedCols": "1"})
    stats = [json.loads(a["add"]["stats"]) for a in _log(path, 0) if "add" in a]
    assert all("b" not in s["nullCount"] for s in stats)  # the writer kept no statistics for b
    assert commits.column_stats(str(path), "a") == ColumnStats(files=1, records=3, non_null=2)
    assert commits.column_stats(str(path), "b") == ColumnStats(files=1, records=3, non_null=None)


def test_column_stats_when_a_file_carries_no_record_count(people: Path) -> None:
    entry = people / "_delta_log" / f"{1:020d}.json"  # as a writer that records no statistics would have left it
    actions = _log(people, 1)
    for action in actions:
        if "add" in action:
            action["add"].pop("stats", None)
    entry.write_text("\n".join(json.dumps(a) for a in actions) + "\n", encoding="utf-8")
    assert commits.column_stats(str(people), "user_id") == ColumnStats(files=2, records=None, non_null=None)
    assert commits.column_stats(str(people), "user_id", 0) == ColumnStats(files=1, records=3, non_null=2)


@pytest.mark.parametrize("name", MAPPED)
def test_column_stats_read_null_counts_under_physical_names(name: str, tmp_path: Path) -> None:
    path = _copy(name, tmp_path)
    rows = lakes.rows(path)
    meta = next(a["metaData"] for a in _log(path, 0) if "metaData" in a)
    fields = json.loads(meta["schemaString"])["fields"]
    assert all(f["metadata"]["delta.columnMapping.physicalName"] != f["name"] for f in fields)
    for f in fields:
        stats = commits.column_stats(str(path), f["name"])
        assert stats.records == len(rows)
        assert stats.non_null == sum(1 for r in rows if r[f["name"]] is not None), f["name"]


def test_column_stats_counts_physical_rows_before_deletion_vectors(tmp_path: Path) -> None:
    path = _copy(DV_TABLE, tmp_path)
    last = lakes.version(path)
    assert last is not None
    live = {a["add"]["path"]: a["add"] for v in range(last + 1) for a in _log(path, v) if "add" in a}
    physical = sum(json.loads(add["stats"])["numRecords"] for p, add in live.items() if p in _replayed(path, last))
    column = json.loads(next(a["metaData"] for a in _log(path, 0) if "metaData" in a)["schemaString"])["fields"][0]
    stats = commits.column_stats(str(path), column["name"])
    assert stats.records == physical
    assert stats.records > len(lakes.rows(path))  # deletion vectors hide rows the statistics still count


def test_column_stats_of_a_missing_table_raises_table_error(tmp_path: Path) -> None:
    with pytest.raises(TableError):
        commits.column_stats(str(tmp_path / "missing"), "user_id")


# --- commit_actions -------------------------------------------------------------------------------------------


def test_commit_actions_of_an_append_keep_escaped_paths_as_written(parted: Path) -> None:
    c = commits.commit_actions(str(parted), 0)
    assert c.version == 0
    assert c.operation == "WRITE"
    assert sorted(c.adds) == sorted(_paths(parted, 0, "add"))
    assert len(c.adds) == 4
    assert any("%" in p for p, _ in c.adds)  # escaped, not decoded
    assert c.removes == ()
    assert c.cdc_files == 0
    assert c.files_added == 4


def test_commit_actions_of_a_delete_that_rewrites_a_file(people: Path) -> None:
    DeltaTable(str(people)).delete("n = 1")
    c = commits.commit_actions(str(people), 2)
    assert c.operation == "DELETE"
    assert c.removes == tuple(_paths(people, 2, "remove"))
    assert c.adds == tuple(_paths(people, 2, "add"))
    assert len(c.removes) == 1 and len(c.adds) == 1
    assert (c.files_rewritten, c.files_added, c.dv_marked) == (1, 1, 0)


def test_commit_actions_of_a_delete_that_drops_a_whole_partition(parted: Path) -> None:
    DeltaTable(str(parted)).delete("k = 'c/d'")
    c = commits.commit_actions(str(parted), 1)
    assert c.adds == ()
    assert c.removes == tuple(_paths(parted, 1, "remove"))
    assert len(c.removes) == 1
    assert c.removes[0][0] in commits.live_files(str(parted), 0)  # names the file as the add did
    assert (c.files_rewritten, c.files_added) == (1, 0)


def test_commit_actions_count_change_data_files(tmp_path: Path) -> None:
    path = tmp_path / "cdf"
    lakes.write_table(path, {"user_id": ["u1", "u2", "u3"]}, configuration={"delta.enableChangeDataFeed": "true"})
    DeltaTable(str(path)).delete("user_id = 'u2'")
    cdc = sum(1 for a in _log(path, 1) if "cdc" in a)
    assert cdc >= 1
    assert commits.commit_actions(str(path), 1).cdc_files == cdc


def test_commit_actions_of_deletion_vector_commits(tmp_path: Path) -> None:
    path = _copy(DV_TABLE, tmp_path)
    first_dv = commits.commit_actions(str(path), 1)
    assert first_dv.adds == tuple(_paths(path, 1, "add"))
    assert first_dv.removes == tuple(_paths(path, 1, "remove"))
    assert [dv for _, dv in first_dv.adds] == [True]
    assert [dv for _, dv in first_dv.removes] == [False]
    assert (first_dv.dv_marked, first_dv.files_rewritten, first_dv.files_added) == (1, 0, 0)
    updated = commits.commit_actions(str(path), 3)  # a DV replaced by a larger one
    assert [dv for _, dv in updated.removes] == [True]
    assert updated.dv_marked == 1
    assert updated.operation == "DELETE"


def test_commit_actions_without_commit_info_has_no_operation(people: Path) -> None:
    entry = people / "_delta_log" / f"{1:020d}.json"
    actions = [a for a in _log(people, 1) if "commitInfo" not in a]
    entry.write_text("\n".join(json.dumps(a) for a in actions) + "\n", encoding="utf-8")
    c = commits.commit_actions(str(people), 1)
    assert c.operation is None
    assert c.adds == tuple(_paths(people, 1, "add"))


def test_commit_actions_of_a_version_the_log_lacks_raises_table_error(people: Path) -> None:
    with pytest.raises(TableError, match="cannot read commit 7"):
        commits.commit_actions(str(people), 7)


# --- live_files -----------------------------------------------------------------------------------------------


def test_live_files_follow_adds_and_removes_version_by_version(people: Path) -> None:
    DeltaTable(str(people)).delete("n = 4")  # v2
    for v in range(3):
        assert commits.live_files(str(people), v) == _replayed(people, v), v
    assert commits.live_files(str(people), 2) != commits.live_files(str(people), 1)


def test_live_files_keep_escaped_paths_and_contain_every_later_remove(parted: Path) -> None:
    DeltaTable(str(parted)).delete("v = 5")  # rewrites the 'a b' partition's file
    live = commits.live_files(str(parted), 0)
    assert live == {p for p, _ in _paths(parted, 0, "add")}
    assert {p for p, _ in _paths(parted, 1, "remove")} <= live


def test_live_files_of_a_table_with_a_checkpoint(tmp_path: Path) -> None:
    path = _copy("basic-with-inserts-deletes-checkpoint", tmp_path)
    last = lakes.version(path)
    assert last is not None and (path / "_delta_log" / f"{10:020d}.checkpoint.parquet").exists()
    assert commits.live_files(str(path), last) == _replayed(path, last)


def test_live_files_of_a_version_the_log_lacks_raises_table_error(people: Path) -> None:
    with pytest.raises(TableError, match="at version 9"):
        commits.live_files(str(people), 9)


# --- history --------------------------------------------------------------------------------------------------


def test_history_is_newest_first_with_versions(people: Path) -> None:
    DeltaTable(str(people)).delete("n = 2")
    expected = [(v, next(a["commitInfo"]["operation"] for a in _log(people, v) if "commitInfo" in a))
                for v in (2, 1, 0)]
    assert [(h["version"], h["operation"]) for h in commits.history(str(people))] == expected
    assert expected[0][1] == "DELETE"


def test_history_honours_the_limit(people: Path) -> None:
    assert [h["version"] for h in commits.history(str(people), 1)] == [1]


def test_history_of_a_missing_table_raises_table_error(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="cannot open"):
        commits.history(str(tmp_path / "missing"))
