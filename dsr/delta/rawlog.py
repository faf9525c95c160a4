"""Protocol and metadata read straight from a table's log — only for tables delta-rs refuses to open, so the
protocol gate can name the feature instead of failing on it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from dsr.delta import storage
from dsr.delta.tableinfo import TableInfo

__all__ = ["raw_log_info"]


_COMMIT = re.compile(r"^(\d{20})\.json$")


def raw_log_info(uri: str, version: int | None, error: str) -> TableInfo | None:
    """Protocol and metadata from the newest JSON commits (or a classic/v2 JSON checkpoint), or None."""
    from pyarrow import fs

    try:
        filesys, base = storage.filesystem(uri)
        log_dir = f"{base}/_delta_log"
        entries = filesys.get_file_info(fs.FileSelector(log_dir, allow_not_found=True))
        commits = sorted(
            (int(m.group(1)), e.path) for e in entries if (m := _COMMIT.match(e.base_name))
        )
        if version is not None:
            if version not in {c[0] for c in commits}:
                return None  # never another version's metadata in place of the one asked for
            commits = [c for c in commits if c[0] <= version]
        if not commits:
            return None
        protocol: dict[str, Any] | None = None
        metadata: dict[str, Any] | None = None
        for _, path in reversed(commits):
            with filesys.open_input_stream(path) as f:
                lines = f.read().decode("utf-8").splitlines()
            for line in lines:
                if not line.strip():
                    continue
                action = json.loads(line)
                if protocol is None and "protocol" in action:
                    protocol = action["protocol"]
                if metadata is None and "metaData" in action:
                    metadata = action["metaData"]
            if protocol is not None and metadata is not None:
                break
        if protocol is None or metadata is None:
            return None
        return _info_from_actions(uri, commits[-1][0], protocol, metadata, error)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _info_from_actions(
    uri: str, version: int, protocol: Mapping[str, Any], metadata: Mapping[str, Any], error: str
) -> TableInfo:
    import pyarrow as pa

    schema = json.loads(metadata.get("schemaString") or '{"fields": []}')
    fields = []
    column_metadata: dict[str, dict[str, str]] = {}
    for f in schema.get("fields", []):
        fields.append(pa.field(str(f["name"]), _raw_type(f.get("type")), bool(f.get("nullable", True))))
        column_metadata[str(f["name"])] = {str(k): str(v) for k, v in (f.get("metadata") or {}).items()}
    rf = protocol.get("readerFeatures")
    wf = protocol.get("writerFeatures")
    return TableInfo(
        uri=uri, version=version, schema=pa.schema(fields),
        partition_columns=tuple(metadata.get("partitionColumns") or ()),
        reader_version=int(protocol.get("minReaderVersion", 1)),
        writer_version=int(protocol.get("minWriterVersion", 2)),
        reader_features=tuple(rf) if rf is not None else None, writer_features=tuple(wf) if wf is not None else None,
        configuration={str(k): str(v) for k, v in (metadata.get("configuration") or {}).items()},
        column_metadata=column_metadata, opened=False, open_error=error,
    )


_RAW_TYPES = {
    "string": "string", "long": "int64", "integer": "int32", "short": "int16", "byte": "int8", "float": "float32",
    "double": "float64", "boolean": "bool_", "binary": "binary", "date": "date32",
}


def _raw_type(t: Any) -> Any:
    """A Delta schema type as an arrow type, for the fields the gate and policy checks look at."""
    import pyarrow as pa

    if isinstance(t, str):
        if t in _RAW_TYPES:
            return getattr(pa, _RAW_TYPES[t])()
        if t == "timestamp":
            return pa.timestamp("us", tz="UTC")
        if t == "timestamp_ntz":
            return pa.timestamp("us")
        m = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", t)
        if m:
            return pa.decimal128(int(m.group(1)), int(m.group(2)))
    return pa.null()  # nested or unknown: never a subject column, never masked


