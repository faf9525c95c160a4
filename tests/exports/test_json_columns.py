"""Export rows are made JSON-ready a column at a time: the same values as ``json_value`` on every cell, for every
type an export meets (text, integers, floats with NaN and infinities, decimals, times with and without zone,
dates, binary, lists, structs, maps, NULLs)."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa

from dsr.exports import json_columns, json_value


def test_column_at_a_time_equals_cell_by_cell() -> None:
    utc = dt.UTC
    batch = pa.RecordBatch.from_pydict({
        "text": pa.array(["a", None, "ü\n\"x\""]),
        "big": pa.array([1, None, -(2**62)], pa.int64()),
        "flag": pa.array([True, None, False]),
        "finite": pa.array([1.5, None, -0.0], pa.float64()),
        "odd": pa.array([float("nan"), float("inf"), 2.0], pa.float32()),
        "money": pa.array([decimal.Decimal("1.10"), None, decimal.Decimal("-3.00")], pa.decimal128(10, 2)),
        "at": pa.array([dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=utc), None, dt.datetime(1970, 1, 1, tzinfo=utc)],
                       pa.timestamp("us", tz="UTC")),
        "local": pa.array([dt.datetime(2026, 1, 2), None, dt.datetime(2026, 12, 31, 23, 59)], pa.timestamp("us")),
        "day": pa.array([dt.date(2026, 1, 2), None, dt.date(1999, 12, 31)]),
        "blob": pa.array([b"\x00\xff", None, b""], pa.binary()),
        "tags": pa.array([["a", "b"], None, []], pa.list_(pa.string())),
        "point": pa.array([{"x": 1, "when": dt.date(2026, 1, 1)}, None, {"x": None, "when": None}]),
        "attrs": pa.array([[("k", decimal.Decimal("1.5"))], None, []], pa.map_(pa.string(), pa.decimal128(4, 1))),
        "nothing": pa.array([None, None, None], pa.null()),
    })

    got = json_columns(batch)

    assert got == [[json_value(v) for v in column.to_pylist()] for column in batch.columns]
    assert got[4][:2] == ["nan", "inf"]  # non-finite floats are strings, as json_value makes them
