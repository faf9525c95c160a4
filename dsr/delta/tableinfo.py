"""What the Delta log says of one version of a table (``TableInfo``), with plain arrow types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PHYSICAL", "TableInfo", "plain_schema", "plain_type"]

PHYSICAL = "delta.columnMapping.physicalName"


@dataclass(frozen=True)
class TableInfo:
    """What the Delta log says of one version of a table. ``schema`` has logical names and plain types."""

    uri: str
    version: int
    schema: Any  # pyarrow Schema
    partition_columns: tuple[str, ...]
    reader_version: int
    writer_version: int
    reader_features: tuple[str, ...] | None
    writer_features: tuple[str, ...] | None
    configuration: Mapping[str, str]
    column_metadata: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    opened: bool = True
    """False when delta-rs could not open the table and this was read from the log alone."""
    open_error: str | None = None

    def physical_name(self, column: str) -> str:
        return str(self.column_metadata.get(column, {}).get(PHYSICAL) or column)

    def fingerprint(self) -> dict[str, Any]:
        """Protocol, configuration, partitioning and schema (with column metadata): what an erase keeps."""
        return {
            "reader_version": self.reader_version, "writer_version": self.writer_version,
            "reader_features": sorted(self.reader_features or []),
            "writer_features": sorted(self.writer_features or []),
            "configuration": dict(sorted(self.configuration.items())),
            "partition_columns": list(self.partition_columns),
            "schema": [(f.name, str(f.type), f.nullable) for f in self.schema],
            "column_metadata": {k: dict(sorted(v.items())) for k, v in sorted(self.column_metadata.items())},
        }


def plain_type(t: Any) -> Any:
    """An arrow type with string/binary views and large variants replaced by plain string/binary (nested too)."""
    import pyarrow as pa

    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(t.value_field.with_type(plain_type(t.value_type)))
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(plain_type(t.key_type)), t.item_field.with_type(plain_type(t.item_type)),
                       keys_sorted=t.keys_sorted)
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(plain_type(t.field(i).type)) for i in range(t.num_fields)])
    return t


def plain_schema(schema: Any) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(f.name, plain_type(f.type), f.nullable) for f in schema])


