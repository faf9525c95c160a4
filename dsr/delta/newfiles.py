"""Which data files of a Delta table a sweep reads: all live files, or those live now that were not live at an
earlier version (appended, re-added by a RESTORE, copied back and committed). Read from the log; nothing here
reads data or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from dsr.delta import access, commits
from dsr.errors import TableError

__all__ = ["DataFile", "Files", "files_since"]


@dataclass(frozen=True)
class DataFile:
    """One live data file: its path below the table (as on storage) and its partition values."""

    path: str
    size: int
    partition: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Files:
    """The files to read at ``version`` (the current one), and how they were chosen."""

    version: int
    files: list[DataFile]
    live: int  # live files at ``version``
    since: int | None  # the version they are new since; None: every live file
    note: str | None = None  # why a requested baseline could not be used


def _live(uri: str, version: int | None) -> tuple[int, dict[str, DataFile]]:
    import pyarrow as pa

    table = access.open_table(uri, version)
    try:
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    except Exception as exc:
        raise TableError(f"listing the files of the Delta table at {uri} failed ({access.error_line(exc)})") from None
    out = {}
    for a in actions:
        parts = {k[len("partition."):]: (None if v is None else str(v)) for k, v in a.items()
                 if k.startswith("partition.")}
        out[str(a["path"])] = DataFile(unquote(str(a["path"])), int(a.get("size_bytes") or 0), parts)
    return int(table.version()), out


def files_since(uri: str, since: int | None) -> Files:
    """The live files to read: every one (``since`` None), or those not live at version ``since``. When
    ``since`` cannot be read (purged away, or newer than the table), every live file, with a note."""
    version, live = _live(uri, None)
    if since is None:
        return Files(version, list(live.values()), len(live), None)
    if since > version:
        return Files(version, list(live.values()), len(live), None,
                     f"version {since} is newer than the table's {version}: every file read")
    try:
        before = commits.live_files(uri, since)
    except TableError:
        return Files(version, list(live.values()), len(live), None,
                     f"version {since} cannot be read (purged?): every file read")
    return Files(version, [f for p, f in live.items() if p not in before], len(live), since)


def read_subject(uri: str, file: DataFile, physical: str, logical: str, arrow_type: Any) -> Any:
    """The subject column of one data file (by its physical name), or its partition value repeated, as an
    array of ``arrow_type``. Rows a deletion vector masks are included: the caller uses them as candidates
    only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dsr.delta import storage

    filesys, base = storage.filesystem(uri)
    with filesys.open_input_file(f"{base}/{file.path}") as f:
        meta = pq.ParquetFile(f)
        if logical in file.partition or physical in file.partition:
            value = file.partition.get(logical, file.partition.get(physical))
            return pa.array([value] * meta.metadata.num_rows, pa.string()).cast(arrow_type)
        return meta.read(columns=[physical]).column(0).combine_chunks().cast(arrow_type)
