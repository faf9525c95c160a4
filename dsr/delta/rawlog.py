"""Protocol and metadata read straight from a table's log — only for tables delta-rs refuses to open, so the
protocol gate can name the feature instead of failing on it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dsr.delta import storage
from dsr.delta.tableinfo import TableInfo

__all__ = ["CHECKPOINT", "COMMIT", "log_actions", "raw_log_info"]


COMMIT = re.compile(r"^(\d{20})\.json$")
# classic (single or multi-part parquet) and v2 (parquet or JSON, named by a uuid) checkpoints
CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.\d{10}\.\d{10}|\.[0-9A-Za-z-]+)?\.(parquet|json)$")

Actions = tuple[dict[str, Any] | None, dict[str, Any] | None]  # (protocol, metaData), either None when absent


def raw_log_info(uri: str, version: int | None, error: str) -> TableInfo | None:
    """Protocol and metadata at ``version`` (the newest when None) from the JSON commits after the newest
    checkpoint at or before it, then that checkpoint (classic parquet, v2 parquet or JSON); None when the log
    does not hold that version, or holds no protocol and metadata for it."""
    from pyarrow import fs

    try:
        filesys, base = storage.filesystem(uri)
        entries = filesys.get_file_info(fs.FileSelector(f"{base}/_delta_log", allow_not_found=True))
        commits = {int(m.group(1)): e.path for e in entries if (m := COMMIT.match(e.base_name))}
        checkpoints: dict[int, list[str]] = {}
        for e in entries:
            if m := CHECKPOINT.match(e.base_name):
                checkpoints.setdefault(int(m.group(1)), []).append(e.path)
        known = set(commits) | set(checkpoints)
        if not known or (version is not None and version not in known):
            return None  # never another version's metadata in place of the one asked for
        target = max(known) if version is None else version
        start = max((v for v in checkpoints if v <= target), default=-1)
        newer = [commits[v] for v in sorted(commits, reverse=True) if start < v <= target]
        protocol, metadata = _newest(filesys, newer)
        if (protocol is None or metadata is None) and start >= 0:
            found = _newest(filesys, sorted(checkpoints[start]))
            protocol, metadata = protocol or found[0], metadata or found[1]
        if protocol is None or metadata is None:
            return None
        return _info_from_actions(uri, target, protocol, metadata, error)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def log_actions(filesys: Any, path: str, kinds: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, action) for the actions of these ``kinds`` in one log file: a JSON commit or checkpoint (an action
    per line), or a parquet checkpoint or v2 sidecar (an action per row, in its column; only those are read)."""
    if path.endswith(".json"):
        with filesys.open_input_stream(path) as f:
            for line in f.read().decode("utf-8").splitlines():
                if line.strip():
                    action = json.loads(line)
                    yield from ((k, action[k]) for k in kinds if isinstance(action.get(k), dict))
    elif path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with filesys.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            columns = [k for k in kinds if k in pf.schema_arrow.names]
            rows = pf.read(columns=columns).to_pylist() if columns else []
        for row in rows:
            yield from ((k, row[k]) for k in columns if row.get(k))


def _newest(filesys: Any, paths: list[str]) -> Actions:
    """The newest protocol and metaData actions in these log files (newest first; the parts of one checkpoint
    in any order)."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        for kind, action in log_actions(filesys, path, ("protocol", "metaData")):
            found.setdefault(kind, action)
        if len(found) == 2:
            break
    metadata = found.get("metaData")
    if metadata is not None and isinstance(metadata.get("configuration"), list):  # a parquet map: (key, value) pairs
        metadata = {**metadata, "configuration": dict(metadata["configuration"])}
    return found.get("protocol"), metadata


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


