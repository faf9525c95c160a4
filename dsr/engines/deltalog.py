"""Table metadata straight from the Delta log (delta-rs), for every engine: open, schema, version.

Whatever a Spark server can or cannot do (Sail has no DESCRIBE HISTORY), the log answers these the same way.
"""

from __future__ import annotations

from typing import Any

from dsr import storage

__all__ = ["LogMetadata", "open_delta", "schema", "version"]


def open_delta(uri: str, version: int | None = None) -> Any:
    """The delta-rs DeltaTable at uri (at a version when given)."""
    from deltalake import DeltaTable

    return DeltaTable(uri, version=version, storage_options=storage.storage_options(uri))


def schema(uri: str) -> Any:
    """The pyarrow schema of the table's current version."""
    import pyarrow as pa

    return pa.schema(open_delta(uri).schema().to_arrow())


def version(uri: str) -> int:
    return int(open_delta(uri).version())


class LogMetadata:
    """Engine mix-in: ``schema`` and ``version`` of the Engine Protocol, answered from the Delta log."""

    def schema(self, uri: str) -> Any:
        return schema(uri)

    def version(self, uri: str) -> int:
        return version(uri)
