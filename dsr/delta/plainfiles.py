"""Data files of a Delta table read as plain Parquet in this process, with the deletion vectors delta-rs' log
replay gives: the in-process half of verification's independent evidence on a cluster reader (the few files an
erase commit added), and the default reader's version of the cluster's plain file pass.

Nothing here uses a Delta reader: the file list, the physical column name and the deletion vectors are given.
Only counts leave this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from dsr.delta import access, storage
from dsr.errors import TableError

__all__ = ["FilePass", "PartitionPass", "deletion_vectors", "file_pass", "live_actions", "masked", "partition_pass"]


BATCH_ROWS = 1 << 16
"""Rows of a file read at a time."""


@dataclass(frozen=True)
class FilePass:
    """Some data files read as plain Parquet: their rows (less those a given deletion vector masks), the non-NULL
    values of one column among them, and how many of those values are among the keys."""

    files: int
    rows: int
    non_null: int
    hits: int


def deletion_vectors(uri: str, version: int) -> dict[str, Any]:
    """Live file path (as the log writes it, URL-encoded) -> its selection vector (True: the row is live), for
    the files carrying a deletion vector at ``version``, by delta-rs' log replay (it reads the vectors' own
    files, never a data file)."""
    import pyarrow as pa

    dt = access.open_table(uri, version)
    try:
        vectors = pa.table(dt.deletion_vectors())
        adds = pa.table(dt.get_add_actions(flatten=True)).column("path").to_pylist()
    except Exception as exc:
        raise TableError(f"reading the deletion vectors of the Delta table at {uri} failed "
                         f"({access.error_line(exc)})") from None
    by_tail = {unquote(str(p)): str(p) for p in adds}
    out: dict[str, Any] = {}
    column: Any = vectors.column("selection_vector").combine_chunks() if vectors.num_rows else None
    for i, where in enumerate(vectors.column("filepath").to_pylist()):
        selection = column[i].values  # a BooleanArray: kept in Arrow, one bit a row, never a Python list
        tail = unquote(str(where))
        for decoded, logged in by_tail.items():
            if tail.endswith("/" + decoded):
                out[logged] = selection
                break
        else:
            raise TableError(f"a deletion vector of the Delta table at {uri} names no live file")
    return out


def file_pass(uri: str, paths: Sequence[str], physical: str, arrow_type: Any, keys: Any,
              selections: Mapping[str, Any] | None = None) -> FilePass:
    """``paths`` (as the log writes them) read as plain Parquet, column ``physical`` (a file without it reads as
    NULLs); a file's rows masked by its selection vector in ``selections`` are left out."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    filesys, base = storage.filesystem(uri)
    wanted = None if keys is None else pa.array([k for k in keys.to_pylist() if k is not None], arrow_type)
    rows = non_null = hits = 0
    for path in paths:
        selection = (selections or {}).get(path)
        try:
            with filesys.open_input_file(f"{base}/{unquote(path)}") as f:
                parquet = pq.ParquetFile(f)
                n = parquet.metadata.num_rows
                columns: Iterator[Any]
                if physical in parquet.schema_arrow.names:  # batch by batch: memory stays flat in file size
                    columns = (b.column(0) for b in parquet.iter_batches(batch_size=BATCH_ROWS, columns=[physical]))
                else:
                    columns = iter([pa.nulls(n, arrow_type)])
                at = 0
                for column in columns:
                    if selection is not None:  # rows past the vector's end are live
                        keep = selection.slice(at, len(column))
                        if len(keep) < len(column):
                            keep = pa.concat_arrays([keep, pa.array([True] * (len(column) - len(keep)))])
                        at += len(column)
                        column = column.filter(keep)
                    rows += len(column)
                    non_null += len(column) - column.null_count
                    if wanted is not None and len(wanted) and len(column) > column.null_count:
                        hits += int(pc.sum(pc.is_in(column.cast(arrow_type), value_set=wanted)).as_py() or 0)
        except TableError:
            raise
        except Exception as exc:
            raise TableError(f"reading a data file of the Delta table at {uri} failed "
                             f"({access.error_line(exc)})") from None
    return FilePass(len(paths), rows, non_null, hits)


def live_actions(uri: str, version: int) -> list[dict[str, Any]]:
    """The add actions live at ``version`` (delta-rs' log replay, flattened: path, num_records, null_count.*,
    min.*, max.*, partition.*)."""
    import pyarrow as pa

    dt = access.open_table(uri, version)
    try:
        return list(pa.table(dt.get_add_actions(flatten=True)).to_pylist())
    except Exception as exc:
        raise TableError(f"listing the files of the Delta table at {uri} failed ({access.error_line(exc)})") from None


def masked(selection: Any) -> int:
    """Rows a selection vector (a pyarrow BooleanArray, or a sequence of booleans) masks."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = selection if isinstance(selection, pa.Array) else pa.array(list(selection), pa.bool_())
    return len(values) - int(pc.sum(values).as_py() or 0)


@dataclass(frozen=True)
class PartitionPass:
    """A partition column counted from the log alone: live rows, rows with a value, rows whose value is a key
    (``complete`` False: a file carries no row count, so the counts are partial)."""

    rows: int
    non_null: int
    hits: int
    complete: bool


def partition_pass(actions: Sequence[Mapping[str, Any]], vectors: Mapping[str, Any], column: str, physical: str,
                   keys: Any) -> PartitionPass:
    """The log's partition values and row counts (less deletion vectors) of a partition column."""
    wanted = {str(k) for k in ([] if keys is None else keys.to_pylist()) if k is not None}
    rows = non_null = hits = 0
    complete = True
    for a in actions:
        value = a.get(f"partition.{column}", a.get(f"partition.{physical}"))
        records = a.get("num_records")
        if records is None:
            complete = False
            continue
        live = int(records) - (masked(vectors[str(a["path"])]) if str(a["path"]) in vectors else 0)
        rows += live
        if value is not None:
            non_null += live
            if str(value) in wanted:  # the log holds the value itself (only paths are URL-encoded)
                hits += live
    return PartitionPass(rows, non_null, hits, complete)
