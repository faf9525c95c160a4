"""Pure helpers of the Spark engine: SQL text (names only, never a subject id), the MERGE source as a small
broadcast DataFrame, commit infos and metrics read the same way whatever the Spark server wrote."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dsr.delta.support import DELETE, UPDATE
from dsr.engines.base import KEY_COLUMN
from dsr.engines.pruning import partition_predicate
from dsr.errors import ConflictError, scrub

__all__ = ["commit_metrics", "error_for", "find_commit", "key_frame", "merge_statement", "normalise_commit",
           "plain_types", "quote"]


def quote(name: str) -> str:
    """A Spark SQL identifier in backticks."""
    return "`" + name.replace("`", "``") + "`"


def merge_statement(
    path: str, view: str, subject: str, operation: str, updates: Mapping[str, str] | None = None,
    partitions: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The MERGE of one erase commit (``operation``: DELETE or UPDATE), restricted to ``partitions`` when given
    (non-personal partition values). Holds names, mask expressions and those values only, never a subject id."""
    within = partition_predicate(partitions, quote)
    head = (
        f"MERGE INTO delta.{quote(path)} AS t USING {quote(view)} AS s "
        f"ON t.{quote(subject)} = s.{quote(KEY_COLUMN)}" + (f" AND {within}" if within else "")
    )
    if operation == DELETE:
        return f"{head} WHEN MATCHED THEN DELETE"
    if operation == UPDATE:
        if not updates:
            raise ValueError("an update needs at least one column update")
        sets = ", ".join(f"t.{quote(col)} = {expr}" for col, expr in updates.items())
        return f"{head} WHEN MATCHED THEN UPDATE SET {sets}"
    raise ValueError(f"engine erase cannot do {operation!r}")


def plain_types(table: Any) -> Any:
    """Large/view string and binary columns as plain ones (what Spark's schema conversion expects)."""
    import pyarrow as pa

    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
            t = pa.binary()
        fields.append(pa.field(f.name, t, nullable=True))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)


def key_frame(spark: Any, table: Any) -> Any:
    """A small broadcast DataFrame of a pyarrow Table (the MERGE source, or the keys of a scan).

    The schema is given explicitly, so an empty table works and the key keeps the column's type.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    table = plain_types(table)
    # DataFrame.hint, not functions.broadcast: the latter picks classic or Connect by process-wide state
    return spark.createDataFrame(table, schema=from_arrow_schema(table.schema)).hint("broadcast")


def commit_metrics(commit: Mapping[str, Any]) -> dict[str, int]:
    """CommitResult's counters from a MERGE commit info (delta-spark writes them as text, Sail as ints)."""
    m = commit.get("operationMetrics") or {}

    def n(key: str) -> int:
        value = m.get(key)
        return int(value) if value not in (None, "") else 0

    return {
        "rows_deleted": n("numTargetRowsDeleted"),
        "rows_updated": n("numTargetRowsUpdated"),
        "rows_copied": n("numTargetRowsCopied"),
        "files_added": n("numTargetFilesAdded"),
        "files_removed": n("numTargetFilesRemoved"),
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _number(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return value


def normalise_commit(commit: Mapping[str, Any]) -> dict[str, Any]:
    """A commit info with its JSON ``userMetadata`` keys lifted to the top level (never overriding) and
    snake_case, numeric aliases of its camelCase ``operationMetrics`` (delta-spark and Sail name them
    ``numTargetRowsDeleted``...; delta-rs ``num_target_rows_deleted``)."""
    out = dict(commit)
    meta = out.get("userMetadata")
    if isinstance(meta, str) and meta.startswith("{"):
        with contextlib.suppress(ValueError):
            parsed = json.loads(meta)
            if isinstance(parsed, dict):
                for k, v in parsed.items():
                    out.setdefault(k, v)
    metrics = out.get("operationMetrics")
    if isinstance(metrics, Mapping):
        aliased = {_snake(k): _number(v) for k, v in metrics.items() if _snake(k) != k}
        out["operationMetrics"] = {**aliased, **metrics}
    return out


def find_commit(history: Sequence[Mapping[str, Any]], before: int, token: str) -> Mapping[str, Any] | None:
    """Our MERGE among the commits after ``before``: the one tagged with our token (delta-spark), else the
    earliest dsr MERGE (its predicate names KEY_COLUMN) - on Sail, which keeps no user metadata."""
    merges = [c for c in history if int(c.get("version", -1)) > before and c.get("operation") == "MERGE"]
    for c in merges:
        if token in str(c.get("userMetadata") or ""):
            return c
    ours = [c for c in merges if any(KEY_COLUMN in str(v) for v in (c.get("operationParameters") or {}).values())]
    return min(ours, key=lambda c: int(c["version"])) if ours else None


def error_for(what: str, exc: BaseException, keys: Sequence[Any]) -> Exception:
    """An exception about ``exc`` whose message cannot carry a subject id."""
    first = (str(exc).strip().splitlines() or [""])[0]
    message = f"spark: {what} failed: {type(exc).__name__}: {scrub(first, keys)[:500]}"
    if "Concurrent" in type(exc).__name__ or "CONCURRENT" in first.upper():
        return ConflictError(message)
    return RuntimeError(message)


