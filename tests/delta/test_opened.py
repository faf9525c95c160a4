"""``dsr.delta.opened``: within a run, one DeltaTable per table, brought up to date at each open; outside, a new
one each time. Real tables under tmp_path; the other writer is a separate ``write_deltalake`` on the path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from dsr.delta import access, opened, tables


def _table(path: Path) -> str:
    write_deltalake(str(path), pa.table({"k": ["a"]}))
    return str(path)


def test_outside_a_scope_every_open_is_a_new_table(tmp_path: Path) -> None:
    uri = _table(tmp_path / "t")
    assert tables.open_table(uri) is not tables.open_table(uri)
    assert access.open_table(uri) is not access.open_table(uri)


def test_within_a_scope_a_table_is_kept_and_sees_every_later_commit(tmp_path: Path) -> None:
    uri = _table(tmp_path / "t")
    with opened.shared():
        first = tables.open_table(uri)
        write_deltalake(uri, pa.table({"k": ["b"]}), mode="append")  # another writer's commit
        again = tables.open_table(uri)
        assert again is first and again.version() == 1
        assert sorted(tables.read_all(again)["k"].to_pylist()) == ["a", "b"]
        with opened.shared():  # a nested scope joins the outer one
            assert access.open_table(uri) is first
    assert tables.open_table(uri) is not first


def test_a_version_asked_for_by_number_is_kept_as_opened(tmp_path: Path) -> None:
    uri = _table(tmp_path / "t")
    write_deltalake(uri, pa.table({"k": ["b"]}), mode="append")
    with opened.shared():
        old = access.open_table(uri, 0)
        write_deltalake(uri, pa.table({"k": ["c"]}), mode="append")
        assert access.open_table(uri, 0) is old and old.version() == 0
        assert access.open_table(uri).version() == 2


def test_a_table_removed_within_a_scope_is_no_longer_found(tmp_path: Path) -> None:
    uri = _table(tmp_path / "t")
    with opened.shared():
        assert tables.open_table(uri) is not None
        shutil.rmtree(uri)
        assert tables.open_table(uri) is None
        _table(Path(uri))  # made again: a new table, not the kept one
        assert tables.open_table(uri).version() == 0
