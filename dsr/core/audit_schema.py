"""The audit log's row schema (one event per row): shared by its writer (:mod:`dsr.core.audit`) and its readers
(:mod:`dsr.core.audit_read`)."""

from __future__ import annotations

from typing import Any

__all__ = ["schema"]


def schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("request_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("table_name", pa.string()),
        pa.field("details", pa.string()),
        pa.field("prev_hash", pa.string(), nullable=False),
        pa.field("hash", pa.string(), nullable=False),
    ])
