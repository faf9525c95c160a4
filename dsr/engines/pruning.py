"""The partition restriction of an erase commit's MERGE, in SQL both engines read.

The erase step reads, just before the commit, which partitions hold the subjects' rows (non-personal partition
columns only: their values go into the commit's predicate, which Delta keeps in the commit info). Restricting
the MERGE's join condition to those partitions lets the engine read only their files; a row of a subject
outside them (appended in between) is left, and the verification that follows fails closed on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["partition_predicate"]


def _partition_literal(value: Any) -> str:
    import datetime as dt

    if isinstance(value, bool):
        raise TypeError("boolean partition values are not pruned")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.date):
        return f"CAST('{value.isoformat()}' AS DATE)"
    return "'" + str(value).replace("'", "''") + "'"


def partition_predicate(partitions: Sequence[Mapping[str, Any]], quote: Callable[[str], str], alias: str = "t"
                        ) -> str | None:
    """``(t.p = v AND ...) OR ...`` over the partitions that hold the subjects' rows, in SQL both engines
    read (``quote`` quotes a column name in the engine's dialect); None when there is nothing to prune by."""
    if not partitions or not all(partitions):
        return None
    terms = []
    for part in partitions:
        conds = [f"{alias}.{quote(c)} IS NULL" if v is None else f"{alias}.{quote(c)} = {_partition_literal(v)}"
                 for c, v in sorted(part.items())]
        terms.append("(" + " AND ".join(conds) + ")")
    return "(" + " OR ".join(sorted(terms)) + ")"
