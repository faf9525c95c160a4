"""The frames and parameters the GE suites are validated on (pandas), built from Arrow reads. Pure."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["BATCH_ROWS", "access_schema", "as_text", "frames", "one_row", "within"]

BATCH_ROWS = 1_000_000


def frames(batches: Iterator[Any], schema: Any, batch_rows: int = BATCH_ROWS) -> Iterator[Any]:
    """pandas frames of at most ``batch_rows`` rows from record batches; at least one (possibly empty)."""
    import pyarrow as pa

    pending: list[Any] = []
    size = 0
    yielded = False
    for batch in batches:
        pending.append(batch)
        size += batch.num_rows
        if size >= batch_rows:
            yield pa.Table.from_batches(pending, schema=schema).to_pandas()
            pending, size, yielded = [], 0, True
    if pending or not yielded:
        yield pa.Table.from_batches(pending, schema=schema).to_pandas()


def access_schema(schema: Any, columns: Sequence[str]) -> Any:
    import pyarrow as pa

    return pa.schema([schema.field(c) for c in columns])


def one_row(**values: Any) -> Any:
    import pandas as pd

    return pd.DataFrame({k: [v] for k, v in values.items()})


def within(params: dict[str, Any], column: Any) -> dict[str, Any]:
    """The pseudonyms a frame's column is checked against, cut to the values it holds: the same verdict for
    every value (v is in the set exactly when it is in the set's values present in the column), without GE
    copying and serialising thousands of pseudonyms in every step of a validation."""
    if "pseudonyms" not in params:
        return params
    present = set(column.dropna().tolist())
    return {**params, "pseudonyms": [p for p in params["pseudonyms"] if p in present]}


def as_text(frame: Any, cols: Sequence[str]) -> Any:
    if not cols:
        return frame
    frame = frame.copy()
    for c in cols:
        frame[c] = frame[c].map(lambda v: None if v is None or v != v else _iso(v))
    return frame


def _iso(v: Any) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)
