"""Unit tests of ``dsr.delta.tables``: the delta-rs helpers behind dsr's own control and audit tables (open, create,
read, the ``reads`` counter, file checks, schema drift, commit properties, optimistic commits, compaction).

Tables are real Delta tables under tmp_path, written with ``tests.lakes``; expectations are literals, rows read
back with ``lakes.rows`` (deltalake directly), the ``_delta_log`` JSON read with ``json``, or deltalake's own API.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from pyarrow import fs

from dsr.delta import tables
from dsr.errors import ConflictError, StoreError
from tests import lakes

SCHEMA = pa.schema([pa.field("request_id", pa.string()), pa.field("n", pa.int64())])


def _commit(path: Path, version: int) -> list[dict[str, Any]]:
    """The actions of one commit, read straight from its JSON log entry."""
    text = (path / "_delta_log" / f"{version:020d}.json").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _commit_info(path: Path, version: int) -> dict[str, Any]:
    return next(a["commitInfo"] for a in _commit(path, version) if "commitInfo" in a)


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: repr(sorted(r.items())))


@pytest.fixture
def requests_table(tmp_path: Path) -> Path:
    """A two-version table: v0 with three rows (one NULL id), v1 with one more."""
    path = tmp_path / "requests"
    lakes.write_table(path, {"request_id": ["r1", "r2", None], "n": [1, 2, 3]}, schema=SCHEMA)
    lakes.write_table(path, {"request_id": ["r4"], "n": [4]}, schema=SCHEMA)
    return path


# --- open_table / create_if_missing -------------------------------------------------------------------------


def test_open_table_is_none_where_no_table_exists(tmp_path: Path) -> None:
    assert tables.open_table(str(tmp_path / "missing")) is None
    (tmp_path / "plain").mkdir()
    assert tables.open_table(str(tmp_path / "plain")) is None
    (tmp_path / "empty_log" / "_delta_log").mkdir(parents=True)
    assert tables.open_table(str(tmp_path / "empty_log")) is None


def test_open_table_opens_the_current_version(requests_table: Path) -> None:
    dt = tables.open_table(str(requests_table))
    assert dt is not None
    assert dt.version() == lakes.version(requests_table) == 1


def test_open_table_with_a_truncated_commit_raises_one_line_store_error(requests_table: Path) -> None:
    (requests_table / "_delta_log" / f"{1:020d}.json").write_text('{"add": {"path": "par', encoding="utf-8")
    with pytest.raises(StoreError) as err:
        tables.open_table(str(requests_table))
    text = str(err.value)
    assert "\n" not in text
    assert str(requests_table) in text
    assert "nothing was written" in text
    assert err.value.exit_code == 2


def test_create_if_missing_creates_an_empty_table_with_name_and_description(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "audit"  # parents do not exist yet
    dt = tables.create_if_missing(str(path), SCHEMA, name="dsr_test", description="a test table")
    assert dt.version() == 0
    again = DeltaTable(str(path))
    assert again.version() == 0
    assert again.metadata().name == "dsr_test"
    assert again.metadata().description == "a test table"
    assert lakes.rows(path) == []
    meta = next(a["metaData"] for a in _commit(path, 0) if "metaData" in a)
    fields = json.loads(meta["schemaString"])["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [("request_id", "string"), ("n", "long")]


def test_create_if_missing_opens_an_existing_table_unchanged(requests_table: Path) -> None:
    dt = tables.create_if_missing(str(requests_table), SCHEMA, name="other", description="other")
    assert dt.version() == 1
    assert lakes.version(requests_table) == 1  # no commit added
    assert DeltaTable(str(requests_table)).metadata().name is None  # lakes.write_table set no name
    assert not (requests_table / "_delta_log" / f"{2:020d}.json").exists()


def test_create_if_missing_survives_a_lost_creation_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "raced"
    real_create = DeltaTable.create

    def rival_wins(*args: Any, **kwargs: Any) -> Any:
        real_create(str(path), schema=SCHEMA, name="rival", description="created first")
        raise OSError("the table was created concurrently")

    monkeypatch.setattr(DeltaTable, "create", rival_wins)
    dt = tables.create_if_missing(str(path), SCHEMA, name="ours", description="ours")
    assert dt.version() == 0
    assert dt.metadata().name == "rival"


def test_create_if_missing_reraises_when_creation_fails_and_no_table_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(DeltaTable, "create", broken)
    with pytest.raises(OSError, match="disk full"):
        tables.create_if_missing(str(tmp_path / "t"), SCHEMA, name="t", description="t")


# --- table_key, native_filesystem, pyarrow_dataset -------------------------------------------------------------


def test_table_key_is_the_local_path_without_scheme_or_trailing_slash(tmp_path: Path) -> None:
    path = tmp_path / "with space" / "t%1"
    lakes.write_table(path, {"a": ["x"]})
    dt = DeltaTable(str(path))
    assert str(dt.table_uri).startswith("file://")
    assert tables.table_key(dt) == str(path)


def test_native_filesystem_is_rooted_at_the_table(tmp_path: Path) -> None:
    path = tmp_path / "a dir" / "t"
    lakes.write_table(path, {"a": ["x"]})
    filesys = tables.native_filesystem(DeltaTable(str(path)))
    assert isinstance(filesys, fs.SubTreeFileSystem)
    assert isinstance(filesys.base_fs, fs.LocalFileSystem)
    assert filesys.base_path.rstrip("/") == str(path)
    assert filesys.get_file_info("_delta_log").type == fs.FileType.Directory
    with filesys.open_input_stream(f"_delta_log/{0:020d}.json") as f:
        assert f.read() == (path / "_delta_log" / f"{0:020d}.json").read_bytes()


def test_pyarrow_dataset_reads_through_a_native_filesystem(requests_table: Path) -> None:
    ds = tables.pyarrow_dataset(DeltaTable(str(requests_table)))
    assert isinstance(ds.filesystem, fs.SubTreeFileSystem)
    assert _sorted(ds.to_table().to_pylist()) == _sorted(lakes.rows(requests_table))


def test_pyarrow_dataset_passes_its_arguments_through(requests_table: Path) -> None:
    dt = DeltaTable(str(requests_table))
    ds = tables.pyarrow_dataset(dt, filesystem=tables.native_filesystem(dt), schema=SCHEMA)
    assert ds.schema == SCHEMA
    assert ds.count_rows() == 4


# --- read_all / read_where and the reads counter --------------------------------------------------------------


def test_read_all_returns_every_row_of_the_loaded_version(requests_table: Path) -> None:
    table = tables.read_all(DeltaTable(str(requests_table)))
    assert _sorted(table.to_pylist()) == _sorted(lakes.rows(requests_table))
    old = tables.read_all(DeltaTable(str(requests_table), version=0))
    assert _sorted(old.to_pylist()) == _sorted(lakes.rows(requests_table, version=0))
    assert old.num_rows == 3


def test_read_all_reads_only_the_columns_asked_for(requests_table: Path) -> None:
    table = tables.read_all(DeltaTable(str(requests_table)), columns=["n"])
    assert table.column_names == ["n"]
    assert sorted(table.column("n").to_pylist()) == [1, 2, 3, 4]


def test_read_all_counts_one_full_read(requests_table: Path) -> None:
    key = (str(requests_table), "full")
    before = Counter(tables.reads)
    dt = DeltaTable(str(requests_table))
    tables.read_all(dt)
    tables.read_all(dt, columns=["n"])
    assert tables.reads[key] - before[key] == 2
    assert tables.reads[(str(requests_table), "filtered")] == before[(str(requests_table), "filtered")]


def test_read_all_with_the_expected_schema_passes(requests_table: Path) -> None:
    table = tables.read_all(DeltaTable(str(requests_table)), schema=SCHEMA)
    assert table.num_rows == 4


def test_read_all_refuses_a_table_whose_schema_drifted(requests_table: Path) -> None:
    expected = pa.schema([*SCHEMA, pa.field("status", pa.string())])
    with pytest.raises(StoreError, match="unexpected schema") as err:
        tables.read_all(DeltaTable(str(requests_table)), schema=expected)
    assert "'status'" in str(err.value)


def test_read_all_with_a_missing_data_file_raises_store_error(requests_table: Path) -> None:
    dt = DeltaTable(str(requests_table))
    next(requests_table.glob("*.parquet")).unlink()
    with pytest.raises(StoreError, match="cannot be read"):
        tables.read_all(dt)


def test_read_where_keeps_only_rows_whose_column_is_among_the_values(requests_table: Path) -> None:
    table = tables.read_where(DeltaTable(str(requests_table)), "request_id", ["r4", "r1", "r1", "nope"])
    expected = [r for r in lakes.rows(requests_table) if r["request_id"] in {"r1", "r4"}]
    assert _sorted(table.to_pylist()) == _sorted(expected)
    assert len(expected) == 2


def test_read_where_with_no_values_returns_no_rows(requests_table: Path) -> None:
    table = tables.read_where(DeltaTable(str(requests_table)), "request_id", [], columns=["n"])
    assert table.num_rows == 0
    assert table.column_names == ["n"]


def test_read_where_counts_one_filtered_read(requests_table: Path) -> None:
    full, filtered = (str(requests_table), "full"), (str(requests_table), "filtered")
    before = Counter(tables.reads)
    tables.read_where(DeltaTable(str(requests_table)), "request_id", ["r2"])
    assert tables.reads[filtered] - before[filtered] == 1
    assert tables.reads[full] == before[full]


def test_read_where_checks_the_schema(requests_table: Path) -> None:
    expected = pa.schema([pa.field("request_id", pa.string()), pa.field("n", pa.int32())])
    with pytest.raises(StoreError, match="column 'n' is int64, expected int32"):
        tables.read_where(DeltaTable(str(requests_table)), "request_id", ["r1"], schema=expected)


def _ranges(path: Path) -> Path:
    """Five files of disjoint request-id ranges (a0.., b0.., ...), then a MERGE that rewrites the c file (its
    columns now stored as string views, which pyarrow's own pruning cannot compare with text)."""
    for letter in "abcde":
        write_deltalake(str(path), pa.table({"request_id": [f"{letter}{i:03d}" for i in range(50)],
                                             "n": list(range(50))}), mode="append")
    DeltaTable(str(path)).merge(pa.table({"k": ["c007"]}), "t.request_id = s.k", source_alias="s",
                                target_alias="t").when_matched_update({"n": "-1"}).execute()
    return path


def _file_of(path: Path, prefix: str) -> Path:
    """The live data file holding the ids that start with ``prefix``."""
    actions = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).to_pylist()
    (rel,) = [a["path"] for a in actions if a["min.request_id"].startswith(prefix)]
    return path / rel


def test_read_where_reads_only_the_files_whose_range_in_the_log_holds_a_value(tmp_path: Path) -> None:
    path = _ranges(tmp_path / "t")
    for other in "abde":  # files that cannot hold c007 or c040 are not read: gone, and the read still answers
        _file_of(path, other).unlink()
    table = tables.read_where(DeltaTable(str(path)), "request_id", ["c040", "c007", "zz"])
    assert sorted(table.to_pylist(), key=lambda r: r["request_id"]) == [
        {"request_id": "c007", "n": -1}, {"request_id": "c040", "n": 40}]
    _file_of(path, "c").unlink()  # the file that can hold them is read: missing, the read fails
    with pytest.raises(StoreError, match="cannot be read"):
        tables.read_where(DeltaTable(str(path)), "request_id", ["c040"])


def test_read_where_keeps_every_file_whose_range_may_hold_a_value(tmp_path: Path) -> None:
    path = _ranges(tmp_path / "t")
    table = tables.read_where(DeltaTable(str(path)), "request_id", ["a049", "b000", "c007", "e010"])
    assert sorted(table.column("request_id").to_pylist()) == ["a049", "b000", "c007", "e010"]
    from dsr.delta.logstats import files_with_values

    assert files_with_values(DeltaTable(str(path)), "n", ["1"]) is None  # not a text column: no text range


@pytest.mark.parametrize(("low", "high", "held"), [
    ("b", "c", True), ("b1", "b3", True), ("a", "a9", False), ("e", "z", False), ("b21", "b29", False),
    (None, "a", True), ("z", None, True), ("d", "d", True),
])
def test_in_range_holds_a_sorted_value_within_the_bounds(low: str | None, high: str | None, held: bool) -> None:
    from dsr.delta.logstats import in_range

    assert in_range(["b2", "b30", "d"], low, high) is held


def test_a_log_path_that_names_no_file_of_the_dataset_keeps_the_dataset_whole(requests_table: Path) -> None:
    dataset = tables.pyarrow_dataset(DeltaTable(str(requests_table)))
    whole = len(list(dataset.get_fragments()))
    one = {next(iter(dataset.get_fragments())).path}
    assert len(list(tables._holding(dataset, one).get_fragments())) == 1
    assert len(list(tables._holding(dataset, {*one, "elsewhere/part-0.parquet"}).get_fragments())) == whole
    assert tables._holding(dataset, None) is dataset


# --- check_files ----------------------------------------------------------------------------------------------


def test_check_files_passes_on_an_intact_partitioned_table_with_escaped_paths(tmp_path: Path) -> None:
    path = tmp_path / "parted"
    lakes.write_table(path, {"k": ["a b", "c/d", "é", "x:y"], "v": [1, 2, 3, 4]}, partition_by=["k"])
    before = Counter(tables.reads)
    tables.check_files(DeltaTable(str(path)))  # no error
    assert tables.reads == before  # looks at the files, reads none


def test_check_files_names_a_missing_data_file(requests_table: Path) -> None:
    dt = DeltaTable(str(requests_table))
    adds = [a["add"]["path"] for v in (0, 1) for a in _commit(requests_table, v) if "add" in a]
    (requests_table / adds[1]).unlink()
    with pytest.raises(StoreError) as err:
        tables.check_files(dt)
    assert "1 data file(s) missing" in str(err.value)
    assert adds[1] in str(err.value)


# --- schema_drift ---------------------------------------------------------------------------------------------


def test_schema_drift_is_none_for_the_same_names_and_plain_types() -> None:
    actual = pa.schema([pa.field("n", pa.int64()), pa.field("request_id", pa.string_view())])
    assert tables.schema_drift(SCHEMA, actual) is None
    large = pa.schema([pa.field("request_id", pa.large_string()), pa.field("n", pa.int64())])
    assert tables.schema_drift(SCHEMA, large) is None


def test_schema_drift_names_what_differs() -> None:
    missing = pa.schema([pa.field("request_id", pa.string())])
    assert tables.schema_drift(SCHEMA, missing) == "column 'n' missing"
    extra = pa.schema([*SCHEMA, pa.field("x", pa.bool_())])
    assert tables.schema_drift(SCHEMA, extra) == "unexpected column 'x'"
    retyped = pa.schema([pa.field("request_id", pa.string()), pa.field("n", pa.string())])
    assert tables.schema_drift(SCHEMA, retyped) == "column 'n' is string, expected int64"


# --- commit_properties / optimistic ---------------------------------------------------------------------------


def test_commit_properties_default_to_no_retries_and_no_metadata() -> None:
    props = tables.commit_properties()
    assert props.max_commit_retries == 0
    assert props.custom_metadata is None
    assert tables.commit_properties({}).custom_metadata is None
    props = tables.commit_properties({"dsr.operation": "claim"}, retries=3)
    assert props.custom_metadata == {"dsr.operation": "claim"}
    assert props.max_commit_retries == 3


def test_commit_properties_metadata_lands_in_the_commit_info(requests_table: Path) -> None:
    write_deltalake(str(requests_table), pa.table({"request_id": ["r5"], "n": [5]}, schema=SCHEMA), mode="append",
                    commit_properties=tables.commit_properties({"dsr.operation": "intake", "dsr.run_id": "run-1"}))
    info = _commit_info(requests_table, 2)
    assert info["dsr.operation"] == "intake"
    assert info["dsr.run_id"] == "run-1"


def test_commit_properties_without_retries_fail_on_any_concurrent_commit(requests_table: Path) -> None:
    ours, theirs = DeltaTable(str(requests_table)), DeltaTable(str(requests_table))
    write_deltalake(theirs, pa.table({"request_id": ["t"], "n": [9]}, schema=SCHEMA), mode="append")
    with pytest.raises(CommitFailedError):
        write_deltalake(ours, pa.table({"request_id": ["o"], "n": [8]}, schema=SCHEMA), mode="append",
                        commit_properties=tables.commit_properties())
    assert lakes.version(requests_table) == 2
    assert "o" not in {r["request_id"] for r in lakes.rows(requests_table)}


def test_optimistic_returns_the_first_successful_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(tables.time, "sleep", sleeps.append)
    assert tables.optimistic(lambda: 42, what="nothing") == 42
    assert sleeps == []


def test_optimistic_retries_a_commit_that_lost_a_race(requests_table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables.time, "sleep", lambda _s: None)
    dt = DeltaTable(str(requests_table))  # loaded at v1
    lakes.write_table(requests_table, {"request_id": ["rival"], "n": [0]}, schema=SCHEMA)  # v2 by another writer
    attempts: list[int] = []

    def attempt() -> int:
        attempts.append(1)
        if len(attempts) > 1:
            dt.update_incremental()  # re-read, as dsr's attempts do
        write_deltalake(dt, pa.table({"request_id": ["mine"], "n": [7]}, schema=SCHEMA), mode="append",
                        commit_properties=tables.commit_properties())
        return int(dt.version())

    assert tables.optimistic(attempt, what="test append") == 3
    assert len(attempts) == 2
    assert sorted(r["request_id"] or "" for r in lakes.rows(requests_table)) == ["", "mine", "r1", "r2", "r4",
                                                                                   "rival"]


def test_optimistic_gives_up_with_a_conflict_error(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(tables.time, "sleep", sleeps.append)
    calls: list[int] = []

    def always_loses() -> None:
        calls.append(1)
        raise CommitFailedError("concurrent commit")

    with pytest.raises(ConflictError, match="claim: gave up after 4 concurrent-commit conflicts"):
        tables.optimistic(always_loses, what="claim", tries=4)
    assert len(calls) == 4
    assert len(sleeps) == 4
    assert all(0 < s <= 1.5 for s in sleeps)


def test_optimistic_does_not_retry_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables.time, "sleep", lambda _s: None)
    calls: list[int] = []

    def fails() -> None:
        calls.append(1)
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        tables.optimistic(fails, what="x")
    assert calls == [1]


# --- compact_small_files --------------------------------------------------------------------------------------


def test_compact_small_files_without_a_table_does_nothing(tmp_path: Path) -> None:
    assert tables.compact_small_files(str(tmp_path / "none")) == 0
    assert not (tmp_path / "none").exists()


def test_compact_small_files_leaves_a_table_with_few_files(tmp_path: Path) -> None:
    path = tmp_path / "few"
    for i in range(3):
        lakes.write_table(path, {"a": [str(i)]})
    assert tables.compact_small_files(str(path), max_files=3) == 0
    assert lakes.version(path) == 2
    assert len(DeltaTable(str(path)).file_uris()) == 3


def test_compact_small_files_bin_packs_the_files_keeping_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "many"
    for i in range(5):
        lakes.write_table(path, {"a": [str(i)], "n": [i]})
    before = lakes.snapshot(path)
    assert tables.compact_small_files(str(path), max_files=4) == 5
    assert lakes.version(path) == 5
    assert len(DeltaTable(str(path)).file_uris()) == 1
    assert lakes.snapshot(path) == before
    info = _commit_info(path, 5)
    assert info["operation"] == "OPTIMIZE"
    assert info["dsr.operation"] == "compact"
