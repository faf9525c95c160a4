"""The one Delta access layer: every read of a data table goes through this module.

It reads with delta-rs' DataFusion reader (``DeltaTable.scan``), which implements the Delta protocol's read
side in full as far as delta-rs goes — column mapping (name and id), deletion vectors, v2 checkpoints,
timestamp partitions — and never ``to_pyarrow_dataset`` (which reads column-mapped columns as NULL and
refuses deletion vectors). Export, erase planning, verification, row counts and the protocol gate all read
here, whatever engine writes; verification therefore never trusts the writer's own reader.

- :func:`table_info`: version, logical schema (plain arrow types), partition columns, protocol, table
  features, configuration and per-column metadata (column-mapping physical names, generation expressions...).
  When delta-rs cannot even open a table (an unknown reader feature), the protocol and metadata are read
  straight from the log, so the gate can name the feature instead of failing on it.
- :func:`scan`: record batches of chosen columns, optionally only rows whose column is in a set of keys; the
  filter is pushed down to the reader (partition and file-statistics pruning) as an ``IN`` list.
- :func:`count_rows`, :func:`column_stats`, :func:`commit_actions`, :func:`live_files`, :func:`history`.

Subject ids reach the reader only inside this process, as literals of the in-process DataFusion predicate;
they never reach a log, a commit or an error message: every error is re-raised as :class:`TableError` whose
text is cut to its first line and scrubbed of the keys of the scan.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.delta import storage
from dsr.errors import TableError

__all__ = [
    "ColumnStats",
    "CommitActions",
    "TableInfo",
    "column_stats",
    "commit_actions",
    "count_rows",
    "error_line",
    "history",
    "in_predicate",
    "live_files",
    "open_table",
    "plain_type",
    "scan",
    "scans",
    "table_info",
]

scans: Counter[str] = Counter()
"""Full or filtered data scans per table uri in this process (tests read it to prove one scan per batch)."""

_PHYSICAL = "delta.columnMapping.physicalName"


# --- opening a table ----------------------------------------------------------------------------------------


def error_line(exc: BaseException, keys: Sequence[Any] = ()) -> str:
    """The first line of an error, at most 300 characters, with any of ``keys`` replaced by <subject>.

    Writers' errors can carry whole rows (delta-rs prints a preview of rows that fail a constraint) on
    their later lines: only the first line is ever kept.
    """
    text = (str(exc).strip().splitlines() or [""])[0]
    for value in sorted({str(k) for k in keys if k is not None and str(k)}, key=len, reverse=True):
        text = text.replace(value, "<subject>")
    return f"{type(exc).__name__}: {text[:300]}"


def open_table(uri: str, version: int | None = None) -> Any:
    """The delta-rs DeltaTable at uri (at a version when given); TableError when it cannot be opened."""
    from deltalake import DeltaTable

    try:
        return DeltaTable(uri, version=version, storage_options=storage.storage_options(uri))
    except Exception as exc:
        at = f" at version {version}" if version is not None else ""
        raise TableError(f"cannot open the Delta table at {uri}{at} ({error_line(exc)})") from None


# --- metadata -------------------------------------------------------------------------------------------------


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
        return str(self.column_metadata.get(column, {}).get(_PHYSICAL) or column)

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


def _plain_schema(schema: Any) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(f.name, plain_type(f.type), f.nullable) for f in schema])


def table_info(uri: str, version: int | None = None) -> TableInfo:
    """The table's metadata from its log. Falls back to reading the log itself when delta-rs cannot open it."""
    import pyarrow as pa

    try:
        dt = open_table(uri, version)
    except TableError as exc:
        raw = _raw_log_info(uri, version, str(exc))
        if raw is None:
            raise
        return raw
    proto = dt.protocol()
    meta = dt.metadata()
    delta_schema = dt.schema()
    column_metadata = {f.name: {str(k): str(v) for k, v in (f.metadata or {}).items()} for f in delta_schema.fields}
    return TableInfo(
        uri=uri,
        version=int(dt.version()),
        schema=_plain_schema(pa.schema(delta_schema.to_arrow())),
        partition_columns=tuple(meta.partition_columns or ()),
        reader_version=int(proto.min_reader_version),
        writer_version=int(proto.min_writer_version),
        reader_features=tuple(proto.reader_features) if proto.reader_features is not None else None,
        writer_features=tuple(proto.writer_features) if proto.writer_features is not None else None,
        configuration={str(k): str(v) for k, v in (meta.configuration or {}).items()},
        column_metadata=column_metadata,
    )


# The raw log reader: only for tables delta-rs refuses to open, so the gate can say why.

_COMMIT = re.compile(r"^(\d{20})\.json$")


def _raw_log_info(uri: str, version: int | None, error: str) -> TableInfo | None:
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


# --- scans ----------------------------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        raise TypeError("boolean subject keys are not supported")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (bytes, bytearray)):
        return "X'" + bytes(value).hex() + "'"
    raise TypeError(f"unsupported subject key type {type(value).__name__}")


def in_predicate(column: str, keys: Any) -> str:
    """``"column" IN (k1, k2, ...)`` for the in-process reader (NULL keys dropped: NULL never matches)."""
    values = [v for v in keys.to_pylist() if v is not None]
    if not values:
        return "FALSE"
    return f"{_quote(column)} IN ({', '.join(_literal(v) for v in values)})"


def scan(
    uri: str, columns: Sequence[str] | None = None, *, where_in: tuple[str, Any] | None = None,
    version: int | None = None, info: TableInfo | None = None,
) -> Iterator[Any]:
    """Record batches (plain arrow types, logical names) of the table at ``version`` (current when None).

    ``where_in`` = (column, pyarrow Array of keys) keeps only rows whose column equals one of the keys
    (pushed down to partition and file-statistics pruning). No keys: nothing is read, nothing yielded.
    """
    import pyarrow as pa

    keys: list[Any] = []
    predicate = None
    if where_in is not None:
        keys = [k for k in where_in[1].to_pylist() if k is not None]
        if not keys:
            return
        predicate = in_predicate(where_in[0], where_in[1])
    dt = open_table(uri, version)
    info = info or table_info(uri, version)
    wanted = list(columns) if columns is not None else list(info.schema.names)
    target = pa.schema([info.schema.field(c) for c in wanted])
    scans[uri] += 1
    try:
        reader = pa.RecordBatchReader.from_stream(dt.scan(columns=wanted, predicate=predicate))
        for batch in reader:
            if batch.num_rows:
                yield _conform(batch, target)
    except TableError:
        raise
    except Exception as exc:
        raise TableError(f"reading the Delta table at {uri} failed ({error_line(exc, keys)})") from None


def _conform(batch: Any, target: Any) -> Any:
    """The batch with the logical schema's plain types and nullability (DataFusion yields string views)."""
    import pyarrow as pa

    if batch.schema.equals(target):
        return batch
    columns = [batch.column(i).cast(target.field(i).type) if batch.column(i).type != target.field(i).type
               else batch.column(i) for i in range(batch.num_columns)]
    return pa.RecordBatch.from_arrays(columns, schema=target)


def count_rows(
    uri: str, version: int | None = None, *, where_in: tuple[str, Any] | None = None,
    null_column: str | None = None,
) -> int:
    """Rows of the table at version (honouring deletion vectors); only those whose column is in the keys of
    ``where_in``, or only those whose ``null_column`` is NULL, when given."""
    import pyarrow as pa
    from deltalake import QueryBuilder

    keys: list[Any] = []
    sql = 'SELECT count(*) AS n FROM "t"'
    if where_in is not None:
        keys = [k for k in where_in[1].to_pylist() if k is not None]
        if not keys:
            return 0
        sql += " WHERE " + in_predicate(where_in[0], where_in[1])
    elif null_column is not None:
        sql += f" WHERE {_quote(null_column)} IS NULL"
    dt = open_table(uri, version)
    try:
        result = pa.table(QueryBuilder().register("t", dt).execute(sql).read_all())
    except Exception as exc:
        raise TableError(f"counting rows of the Delta table at {uri} failed ({error_line(exc, keys)})") from None
    return int(result.column(0)[0].as_py() or 0)


# --- files, statistics and commits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnStats:
    """What the log's file statistics say of one column at one version."""

    files: int
    records: int | None  # None when a file carries no numRecords
    non_null: int | None  # None when a file carries no null count for the column


def column_stats(uri: str, column: str, version: int | None = None, *, info: TableInfo | None = None) -> ColumnStats:
    """Rows and non-null values of ``column`` by the log's per-file statistics (physical rows: before DVs)."""
    import pyarrow as pa

    info = info or table_info(uri, version)
    dt = open_table(uri, version)
    try:
        actions = pa.table(dt.get_add_actions(flatten=True))
    except Exception as exc:
        raise TableError(f"listing the files of the Delta table at {uri} failed ({error_line(exc)})") from None
    n = actions.num_rows
    if n == 0:
        return ColumnStats(0, 0, 0)
    records_col = actions.column("num_records") if "num_records" in actions.column_names else None
    records = None if records_col is None or records_col.null_count else int(sum(records_col.to_pylist()))
    null_name = f"null_count.{info.physical_name(column)}"
    non_null = None
    if records is not None and null_name in actions.column_names and column not in info.partition_columns:
        nulls = actions.column(null_name)
        if not nulls.null_count:
            non_null = records - int(sum(nulls.to_pylist()))
    return ColumnStats(files=n, records=records, non_null=non_null)


def _log_path(uri: str, version: int) -> tuple[Any, str]:
    filesys, base = storage.filesystem(uri)
    return filesys, f"{base}/_delta_log/{version:020d}.json"


@dataclass(frozen=True)
class CommitActions:
    """The file actions of one commit, paths exactly as written in the log (URL-encoded, not decoded: a
    remove must name its file the way the add did, or readers keep the file)."""

    version: int
    adds: tuple[tuple[str, bool], ...]  # (path, carries a deletion vector)
    removes: tuple[tuple[str, bool], ...]
    cdc_files: int
    operation: str | None

    @property
    def dv_marked(self) -> int:
        """Files kept in place with a new or updated deletion vector (same path removed and added)."""
        removed = {p for p, _ in self.removes}
        return sum(1 for p, dv in self.adds if dv and p in removed)

    @property
    def files_rewritten(self) -> int:
        """Files removed whose rows were written anew (not merely given a deletion vector)."""
        added = {p for p, _ in self.adds}
        return sum(1 for p, _ in self.removes if p not in added)

    @property
    def files_added(self) -> int:
        removed = {p for p, _ in self.removes}
        return sum(1 for p, _ in self.adds if p not in removed)


def commit_actions(uri: str, version: int) -> CommitActions:
    """The add/remove/cdc actions of the commit that made ``version``, read from its JSON log entry."""
    filesys, path = _log_path(uri, version)
    try:
        with filesys.open_input_stream(path) as f:
            lines = f.read().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"cannot read commit {version} of the Delta table at {uri} ({error_line(exc)})") from None
    adds: list[tuple[str, bool]] = []
    removes: list[tuple[str, bool]] = []
    cdc = 0
    operation = None
    for line in lines:
        if not line.strip():
            continue
        action = json.loads(line)
        if "add" in action:
            adds.append((str(action["add"]["path"]), bool(action["add"].get("deletionVector"))))
        elif "remove" in action:
            removes.append((str(action["remove"]["path"]), bool(action["remove"].get("deletionVector"))))
        elif "cdc" in action:
            cdc += 1
        elif "commitInfo" in action:
            operation = action["commitInfo"].get("operation")
    return CommitActions(version, tuple(adds), tuple(removes), cdc, operation)


def live_files(uri: str, version: int) -> set[str]:
    """Relative paths of the data files live at ``version``, exactly as their add actions wrote them."""
    import pyarrow as pa

    dt = open_table(uri, version)
    try:
        actions = pa.table(dt.get_add_actions(flatten=False))
    except Exception as exc:
        raise TableError(f"listing the files of the Delta table at {uri} failed ({error_line(exc)})") from None
    return {str(p) for p in actions.column("path").to_pylist()}


def history(uri: str, limit: int = 20) -> list[dict[str, Any]]:
    """Recent commit infos, newest first, each with 'version' (delta-rs' history)."""
    dt = open_table(uri)
    try:
        return list(dt.history(limit))
    except Exception as exc:
        raise TableError(f"reading the history of the Delta table at {uri} failed ({error_line(exc)})") from None
