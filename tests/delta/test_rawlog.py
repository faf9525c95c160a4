"""Unit tests of ``dsr.delta.rawlog``: ``raw_log_info``, the protocol and metadata read straight from a table's
``_delta_log`` for tables delta-rs refuses to open.

Tables are real Delta tables under tmp_path (written with ``tests.lakes`` and deltalake's own operations, or a
vendored table copied there); a few logs are then cut or extended by hand to make the cases delta-rs cannot open.
Expectations are literals, the log's JSON read directly, or deltalake's own ``DeltaTable(...).protocol()``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from dsr.delta.rawlog import raw_log_info
from tests import lakes
from tests import real_tables as rt

ERROR = "cannot open the Delta table (DeltaError: unsupported reader feature)"


def _entry(path: Path, version: int) -> Path:
    return path / "_delta_log" / f"{version:020d}.json"


def _log(path: Path, version: int) -> list[dict[str, Any]]:
    """The actions of one commit, read straight from its JSON log entry."""
    text = _entry(path, version).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _write_commit(path: Path, version: int, actions: list[dict[str, Any]]) -> None:
    _entry(path, version).write_text("".join(json.dumps(a) + "\n" for a in actions), encoding="utf-8")


@pytest.fixture
def evolving(tmp_path: Path) -> Path:
    """JSON commits only: v0, v1 appends (column a); v2 enables change data feed (writer version 4, new
    configuration); v3 appends with a new column b (schema evolution)."""
    path = tmp_path / "evolving"
    lakes.write_table(path, {"a": ["x"]})
    lakes.write_table(path, {"a": ["y"]})
    DeltaTable(str(path)).alter.set_table_properties({"delta.enableChangeDataFeed": "true"})
    lakes.write_table(path, {"a": ["z"], "b": [1]}, schema_mode="merge")
    assert not list((path / "_delta_log").glob("*.checkpoint*"))
    return path


# --- JSON commits only ------------------------------------------------------------------------------------------


def test_newest_protocol_and_metadata_of_a_table_with_json_commits_only(evolving: Path) -> None:
    info = raw_log_info(str(evolving), None, ERROR)
    assert info is not None
    assert info.version == 3
    assert (info.reader_version, info.writer_version) == (1, 4)
    assert info.reader_features is None and info.writer_features is None
    assert dict(info.configuration) == {"delta.enableChangeDataFeed": "true"}
    assert info.schema == pa.schema([pa.field("a", pa.string()), pa.field("b", pa.int64())])
    assert info.partition_columns == ()
    assert info.uri == str(evolving)
    assert info.opened is False
    assert info.open_error == ERROR


def test_the_version_asked_for_gets_that_versions_protocol_and_metadata(evolving: Path) -> None:
    info = raw_log_info(str(evolving), 1, ERROR)
    assert info is not None
    assert info.version == 1
    assert (info.reader_version, info.writer_version) == (1, 2)
    assert dict(info.configuration) == {}
    assert info.schema.names == ["a"]
    two = raw_log_info(str(evolving), 2, ERROR)
    assert two is not None
    assert (two.version, two.writer_version, two.schema.names) == (2, 4, ["a"])


def test_agrees_with_the_json_log_read_directly(evolving: Path) -> None:
    protocol = next(a["protocol"] for v in (3, 2, 1, 0) for a in _log(evolving, v) if "protocol" in a)
    metadata = next(a["metaData"] for v in (3, 2, 1, 0) for a in _log(evolving, v) if "metaData" in a)
    info = raw_log_info(str(evolving), None, ERROR)
    assert info is not None
    assert info.reader_version == protocol["minReaderVersion"]
    assert info.writer_version == protocol["minWriterVersion"]
    assert dict(info.configuration) == metadata["configuration"]
    fields = json.loads(metadata["schemaString"])["fields"]
    assert info.schema.names == [f["name"] for f in fields]
    assert [f.nullable for f in info.schema] == [f["nullable"] for f in fields]


# --- versions the log does not hold --------------------------------------------------------------------------


def test_a_version_newer_than_the_log_gives_none(evolving: Path) -> None:
    assert raw_log_info(str(evolving), 4, ERROR) is None
    assert raw_log_info(str(evolving), 99, ERROR) is None


def test_a_version_whose_commit_is_gone_gives_none_not_another_versions_metadata(evolving: Path) -> None:
    _entry(evolving, 2).unlink()  # a gap: v2's commit file is missing, v0, v1 and v3 remain
    assert raw_log_info(str(evolving), 2, ERROR) is None
    info = raw_log_info(str(evolving), 1, ERROR)
    assert info is not None
    assert (info.version, info.writer_version) == (1, 2)


def test_a_negative_version_gives_none(evolving: Path) -> None:
    assert raw_log_info(str(evolving), -1, ERROR) is None


# --- logs without protocol or metadata -------------------------------------------------------------------------


def test_no_log_at_all_gives_none(tmp_path: Path) -> None:
    assert raw_log_info(str(tmp_path / "missing"), None, ERROR) is None
    (tmp_path / "empty" / "_delta_log").mkdir(parents=True)
    assert raw_log_info(str(tmp_path / "empty"), None, ERROR) is None
    assert raw_log_info(str(tmp_path / "empty"), 0, ERROR) is None


def test_commits_without_protocol_and_metadata_give_none(tmp_path: Path) -> None:
    path = tmp_path / "appends"
    for value in ("x", "y", "z"):
        lakes.write_table(path, {"a": [value]})
    _entry(path, 0).unlink()  # the commit that held both, as if cleaned up (without a checkpoint)
    assert all("protocol" not in a and "metaData" not in a for v in (1, 2) for a in _log(path, v))
    assert raw_log_info(str(path), None, ERROR) is None
    assert raw_log_info(str(path), 2, ERROR) is None


@pytest.mark.parametrize("kept", ["protocol", "metaData"])
def test_a_log_with_only_one_of_protocol_and_metadata_gives_none(kept: str, tmp_path: Path) -> None:
    path = tmp_path / "half"
    lakes.write_table(path, {"a": ["x"]})
    actions = _log(path, 0)
    assert {"protocol", "metaData"} <= {k for a in actions for k in a}
    _write_commit(path, 0, [a for a in actions if kept in a or not ({"protocol", "metaData"} & a.keys())])
    assert raw_log_info(str(path), None, ERROR) is None
    assert raw_log_info(str(path), 0, ERROR) is None


def test_an_unreadable_newest_commit_gives_none(evolving: Path) -> None:
    _entry(evolving, 3).write_text('{"add": {"path": "trunc', encoding="utf-8")
    assert raw_log_info(str(evolving), None, ERROR) is None


def test_an_unsupported_storage_scheme_gives_none() -> None:
    assert raw_log_info("gs://bucket/table", None, ERROR) is None


# --- what delta-rs cannot open ---------------------------------------------------------------------------------


def test_names_a_reader_feature_delta_rs_refuses(tmp_path: Path) -> None:
    path = tmp_path / "future"
    lakes.write_table(path, {"a": ["x"]})
    _write_commit(path, 1, [
        {"commitInfo": {"operation": "UPGRADE PROTOCOL"}},
        {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                      "readerFeatures": ["madeUpFeature"], "writerFeatures": ["madeUpFeature"]}},
    ])
    with pytest.raises(DeltaError, match="madeUpFeature"):  # delta-rs refuses the table
        DeltaTable(str(path))
    info = raw_log_info(str(path), None, ERROR)
    assert info is not None
    assert info.version == 1
    assert (info.reader_version, info.writer_version) == (3, 7)
    assert info.reader_features == ("madeUpFeature",)
    assert info.writer_features == ("madeUpFeature",)
    assert info.schema.names == ["a"]  # the metadata of v0, the newest there is
    old = raw_log_info(str(path), 0, ERROR)
    assert old is not None
    assert (old.reader_version, old.reader_features) == (1, None)


# --- schema, partitioning and column metadata --------------------------------------------------------------------


def test_schema_types_and_nullability_from_the_log(tmp_path: Path) -> None:
    path = tmp_path / "types"
    schema = pa.schema([
        pa.field("s", pa.string(), nullable=False), pa.field("l", pa.int64()), pa.field("i", pa.int32()),
        pa.field("sh", pa.int16()), pa.field("b", pa.int8()), pa.field("f", pa.float32()),
        pa.field("d", pa.float64()), pa.field("bo", pa.bool_()), pa.field("bi", pa.binary()),
        pa.field("da", pa.date32()), pa.field("ts", pa.timestamp("us", tz="UTC")), pa.field("ntz", pa.timestamp("us")),
        pa.field("dec", pa.decimal128(10, 2)), pa.field("st", pa.struct([pa.field("x", pa.int64())])),
        pa.field("li", pa.list_(pa.string())),
    ])
    row = {"s": "a", "l": 1, "i": 2, "sh": 3, "b": 4, "f": 1.5, "d": 2.5, "bo": True, "bi": b"x",
           "da": dt.date(2020, 1, 1), "ts": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "ntz": dt.datetime(2020, 1, 1),
           "dec": decimal.Decimal("1.25"), "st": {"x": 1}, "li": ["q"]}
    lakes.write_table(path, pa.Table.from_pylist([row], schema=schema))
    info = raw_log_info(str(path), None, ERROR)
    assert info is not None
    expected = pa.schema([
        *(f for f in schema if f.name not in ("st", "li")),
        pa.field("st", pa.null()), pa.field("li", pa.null()),  # nested: never a subject column
    ])
    assert info.schema == expected
    assert info.schema.field("s").nullable is False
    assert (info.reader_version, info.writer_version) == (3, 7)  # timestamp_ntz is a table feature
    assert info.reader_features == ("timestampNtz",)


def test_partition_columns_from_the_log(tmp_path: Path) -> None:
    path = tmp_path / "parted"
    lakes.write_table(path, {"day": ["d1", "d2"], "user_id": ["u1", "u2"]}, partition_by=["day"])
    info = raw_log_info(str(path), None, ERROR)
    assert info is not None
    assert info.partition_columns == ("day",)


@pytest.mark.parametrize("name", ["data-skipping-basic-stats-all-types-columnmapping-name",
                                  "data-reader-timestamp_ntz-name-mode"])
def test_column_mapping_metadata_matches_delta_rs(name: str, tmp_path: Path) -> None:
    source = rt.VENDORED / name
    if not (source / "_delta_log").is_dir():
        pytest.skip(f"vendored table {name} is not present")
    path = Path(shutil.copytree(source, tmp_path / name))
    info = raw_log_info(str(path), None, ERROR)
    assert info is not None
    fields = DeltaTable(str(path)).schema().fields
    assert list(info.column_metadata) == [f.name for f in fields]
    for f in fields:
        assert dict(info.column_metadata[f.name]) == {str(k): str(v) for k, v in (f.metadata or {}).items()}
        assert "delta.columnMapping.physicalName" in info.column_metadata[f.name]
    assert info.physical_name(fields[0].name) != fields[0].name


# --- real tables: the same protocol and version as delta-rs ---------------------------------------------------


@pytest.mark.parametrize("source", rt.table_dirs(), ids=lambda p: p.name)
def test_real_table_protocol_and_version_match_delta_rs(source: Path, tmp_path: Path) -> None:
    path = Path(shutil.copytree(source, tmp_path / source.name))
    try:
        table = DeltaTable(str(path))
    except Exception as exc:  # a table delta-rs cannot open has nothing to compare with
        pytest.skip(f"delta-rs cannot open {source.name}: {type(exc).__name__}")
    protocol, metadata = table.protocol(), table.metadata()
    info = raw_log_info(str(path), None, ERROR)
    assert info is not None
    assert info.version == table.version()
    assert info.reader_version == protocol.min_reader_version
    assert info.writer_version == protocol.min_writer_version
    assert sorted(info.reader_features or []) == sorted(protocol.reader_features or [])
    assert sorted(info.writer_features or []) == sorted(protocol.writer_features or [])
    assert (info.reader_features is None) == (protocol.reader_features is None)
    assert list(info.partition_columns) == list(metadata.partition_columns)
    assert dict(info.configuration) == dict(metadata.configuration)
    assert info.schema.names == [f.name for f in table.schema().fields]


def test_an_older_version_of_a_real_table_matches_delta_rs(tmp_path: Path) -> None:
    name = "basic-with-inserts-deletes-checkpoint"
    source = rt.VENDORED / name
    if not (source / "_delta_log").is_dir():
        pytest.skip(f"vendored table {name} is not present")
    path = Path(shutil.copytree(source, tmp_path / name))
    for version in (0, 5, 12):
        old = DeltaTable(str(path), version=version)
        info = raw_log_info(str(path), version, ERROR)
        assert info is not None
        assert info.version == version == old.version()
        assert (info.reader_version, info.writer_version) == (old.protocol().min_reader_version,
                                                              old.protocol().min_writer_version)


CHECKPOINTED = [p for p in rt.table_dirs() if any((p / "_delta_log").glob("[0-9]*.checkpoint*"))]


@pytest.mark.parametrize("source", CHECKPOINTED, ids=lambda p: p.name)
def test_a_checkpoint_stands_in_for_the_commits_log_cleanup_removed(source: Path, tmp_path: Path) -> None:
    """Classic parquet and v2 (JSON with sidecars) checkpoints: with every JSON commit up to the newest checkpoint
    deleted, as log cleanup leaves a table, the checkpoint gives the protocol and metadata delta-rs reads."""
    path = Path(shutil.copytree(source, tmp_path / source.name))
    log = path / "_delta_log"
    newest = max(int(f.name[:20]) for f in log.glob("[0-9]*.checkpoint*"))
    for commit in log.glob("*.json"):
        if commit.name[:20].isdigit() and ".checkpoint" not in commit.name and int(commit.name[:20]) <= newest:
            commit.unlink()
    table = DeltaTable(str(path))
    info = raw_log_info(str(path), None, ERROR)
    assert info is not None
    assert info.version == table.version()
    assert (info.reader_version, info.writer_version) == (table.protocol().min_reader_version,
                                                          table.protocol().min_writer_version)
    assert sorted(info.reader_features or []) == sorted(table.protocol().reader_features or [])
    assert sorted(info.writer_features or []) == sorted(table.protocol().writer_features or [])
    assert dict(info.configuration) == dict(table.metadata().configuration)
    assert info.schema.names == [f.name for f in table.schema().fields]
    at_checkpoint = raw_log_info(str(path), newest, ERROR)
    assert at_checkpoint is not None and at_checkpoint.version == newest
    assert raw_log_info(str(path), newest - 1, ERROR) is None  # its commit is gone: never a stand-in
