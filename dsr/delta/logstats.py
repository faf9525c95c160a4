"""Which files of a table can hold some values of a text column, by the Delta log's statistics alone.

pyarrow prunes a dataset's files by their Parquet statistics, but not the files that delta-rs' MERGE rewrote: they
store ``string_view`` columns, which pyarrow cannot compare with text (it refuses, then dsr reads the column
whole). The log's ``add`` actions carry each file's min and max in plain JSON, whatever the file stores: a
filtered read of dsr's own tables (control table, audit log, suppression list) reads only the files whose range
holds one of its values. A file without statistics may hold anything: it is always kept.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

__all__ = ["files_with_values", "in_range"]


def in_range(values: Sequence[str], low: str | None, high: str | None) -> bool:
    """Whether a sorted ``values`` holds one in [low, high] (no bound: True). Text compares by code point, the
    order of UTF-8 bytes the statistics were written in; delta-rs writes a truncated max rounded up."""
    if low is None or high is None:
        return True
    i = bisect_left(values, low)
    return i < len(values) and values[i] <= high


def files_with_values(dt: Any, column: str, values: Sequence[str]) -> set[str] | None:
    """The live files (paths relative to the table, unquoted) whose log statistics of ``column`` allow one of
    ``values``; None when the log holds no text statistics of the column (every file may hold them). For dsr's own
    tables (no column mapping: the statistics are keyed by the column's name)."""
    import pyarrow as pa

    actions = pa.table(dt.get_add_actions(flatten=True))
    low, high = f"min.{column}", f"max.{column}"
    if low not in actions.column_names or high not in actions.column_names or not all(
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
            for t in (actions.schema.field(low).type, actions.schema.field(high).type)):
        return None
    wanted = sorted(values)
    paths, lows, highs = (actions.column(c).to_pylist() for c in ("path", low, high))
    return {unquote(p) for p, lo, hi in zip(paths, lows, highs, strict=True) if in_range(wanted, lo, hi)}
