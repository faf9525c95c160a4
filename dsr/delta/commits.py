"""A table's files, file statistics and commits, read from its log by the access layer: what verification
checks a commit against (removes naming live files, deletion vectors added, statistics of a column)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dsr.delta import storage
from dsr.delta.access import error_line, open_table, table_info
from dsr.delta.tableinfo import TableInfo
from dsr.errors import TableError

__all__ = ["ColumnStats", "CommitActions", "column_stats", "commit_actions", "history", "live_files"]


@dataclass(frozen=True)
class ColumnStats:
    """What the log's file statistics say of one column at one version."""

    files: int
    records: int | None  # None when a file carries no numRecords
    non_null: int | None  # None when a file carries no null count for the column


def column_stats(uri: str, column: str, version: int | None = None, *, info: TableInfo | None = None) -> ColumnStats:
    """Rows and non-null values of ``column`` by the log's per-file statistics (physical rows: before DVs)."""
    import pyarrow as pa

    info = info or table_info(uri, version)
    dt = open_table(uri, version)
    try:
        actions = pa.table(dt.get_add_actions(flatten=True))
    except Exception as exc:
        raise TableError(f"listing the files of the Delta table at {uri} failed ({error_line(exc)})") from None
    n = actions.num_rows
    if n == 0:
        return ColumnStats(0, 0, 0)
    records_col = actions.column("num_records") if "num_records" in actions.column_names else None
    records = None if records_col is None or records_col.null_count else int(sum(records_col.to_pylist()))
    null_name = f"null_count.{info.physical_name(column)}"
    non_null = None
    if records is not None and null_name in actions.column_names and column not in info.partition_columns:
        nulls = actions.column(null_name)
        if not nulls.null_count:
            non_null = records - int(sum(nulls.to_pylist()))
    return ColumnStats(files=n, records=records, non_null=non_null)


def _log_path(uri: str, version: int) -> tuple[Any, str]:
    filesys, base = storage.filesystem(uri)
    return filesys, f"{base}/_delta_log/{version:020d}.json"


@dataclass(frozen=True)
class CommitActions:
    """The file actions of one commit, paths exactly as written in the log (URL-encoded, not decoded: a
    remove must name its file the way the add did, or readers keep the file)."""

    version: int
    adds: tuple[tuple[str, bool], ...]  # (path, carries a deletion vector)
    removes: tuple[tuple[str, bool], ...]
    cdc_files: int
    operation: str | None

    @property
    def dv_marked(self) -> int:
        """Files kept in place with a new or updated deletion vector (same path removed and added)."""
        removed = {p for p, _ in self.removes}
        return sum(1 for p, dv in self.adds if dv and p in removed)

    @property
    def files_rewritten(self) -> int:
        """Files removed whose rows were written anew (not merely given a deletion vector)."""
        added = {p for p, _ in self.adds}
        return sum(1 for p, _ in self.removes if p not in added)

    @property
    def files_added(self) -> int:
        removed = {p for p, _ in self.removes}
        return sum(1 for p, _ in self.adds if p not in removed)


def commit_actions(uri: str, version: int) -> CommitActions:
    """The add/remove/cdc actions of the commit that made ``version``, read from its JSON log entry."""
    filesys, path = _log_path(uri, version)
    try:
        with filesys.open_input_stream(path) as f:
            lines = f.read().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"cannot read commit {version} of the Delta table at {uri} ({error_line(exc)})") from None
    adds: list[tuple[str, bool]] = []
    removes: list[tuple[str, bool]] = []
    cdc = 0
    operation = None
    for line in lines:
        if not line.strip():
            continue
        action = json.loads(line)
        if "add" in action:
            adds.append((str(action["add"]["path"]), bool(action["add"].get("deletionVector"))))
        elif "remove" in action:
            removes.append((str(action["remove"]["path"]), bool(action["remove"].get("deletionVector"))))
        elif "cdc" in action:
            cdc += 1
        elif "commitInfo" in action:
            operation = action["commitInfo"].get("operation")
    return CommitActions(version, tuple(adds), tuple(removes), cdc, operation)


def live_files(uri: str, version: int) -> set[str]:
    """Relative paths of the data files live at ``version``, exactly as their add actions wrote them."""
    import pyarrow as pa

    dt = open_table(uri, version)
    try:
        actions = pa.table(dt.get_add_actions(flatten=False))
    except Exception as exc:
        raise TableError(f"listing the files of the Delta table at {uri} failed ({error_line(exc)})") from None
    return {str(p) for p in actions.column("path").to_pylist()}


def history(uri: str, limit: int = 20) -> list[dict[str, Any]]:
    """Recent commit infos, newest first, each with 'version' (delta-rs' history)."""
    dt = open_table(uri)
    try:
        return list(dt.history(limit))
    except Exception as exc:
        raise TableError(f"reading the history of the Delta table at {uri} failed ({error_line(exc)})") from None
