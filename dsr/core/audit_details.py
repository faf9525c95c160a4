"""The audit rows' ``details`` (compact JSON text, one object per event) parsed in Arrow, a column at a time:
questions asked over the whole history (which spec an erase ran under, whether a sweep failed) read a few fields
of hundreds of thousands of events without turning each into a Python object."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

__all__ = ["decoded", "decoded_rows", "fields_of"]


def fields_of(details: Any, fields: Any) -> Any:
    """A pyarrow Table of the top-level ``fields`` (a pyarrow schema) of every details text, null where absent.
    dsr writes details as compact JSON, so a text holds no line break and the texts join into one JSON-lines
    buffer for Arrow's reader; a field of another JSON type than its schema says is an error, never a guess."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import json as pajson

    chunks = details.chunks if isinstance(details, pa.ChunkedArray) else [details]
    texts = pa.concat_arrays([c.cast(pa.large_string()) for c in chunks] or
                             [pa.array([], pa.large_string())]).fill_null("{}")
    if len(texts) == 0:
        return fields.empty_table()
    joined = pc.binary_join(pa.LargeListArray.from_arrays(pa.array([0, len(texts)], pa.int64()), texts),
                            pa.scalar("\n", pa.large_string()))
    parsed = pajson.read_json(io.BytesIO(joined[0].as_buffer()), parse_options=pajson.ParseOptions(
        explicit_schema=fields, unexpected_field_behavior="ignore", newlines_in_values=False))
    if parsed.num_rows != len(texts):
        raise ValueError("audit details are not one JSON object per event")
    return parsed


def decoded(rows: Any) -> list[dict[str, Any]]:
    """Audit rows (a pyarrow Table) as dicts, in the table's order, each ``details`` decoded ({} when empty)."""
    return decoded_rows(rows.to_pylist())


def decoded_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit rows (dicts of their columns) with their ``details`` text decoded ({} when empty); rows with the
    same text (one check's result recorded for every request) share one decoded dict: details are read, never
    changed."""
    texts: dict[str, Any] = {}
    out = []
    for row in rows:
        text = row["details"]
        if text not in texts:
            texts[text] = json.loads(text) if text else {}
        out.append({**row, "details": texts[text]})
    return out
