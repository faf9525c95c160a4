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

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from dsr.delta import opened, storage
from dsr.delta.rawlog import raw_log_info
from dsr.delta.tableinfo import TableInfo, plain_schema, plain_type
from dsr.errors import TableError, scrub

__all__ = [
    "TableInfo",
    "conform",
    "count_rows",
    "error_line",
    "in_predicate",
    "open_table",
    "plain_type",
    "scan",
    "scans",
    "table_info",
    "target_schema",
]

scans: Counter[str] = Counter()
"""Full or filtered data scans per table uri in this process (tests read it to prove one scan per batch)."""


# --- opening a table ----------------------------------------------------------------------------------------


def error_line(exc: BaseException, keys: Sequence[Any] = ()) -> str:
    """The first line of an error, at most 300 characters, with any of ``keys`` that stands as a whole token
    replaced by <subject> (:func:`dsr.errors.scrub`).

    Writers' errors can carry whole rows (delta-rs prints a preview of rows that fail a constraint) on
    their later lines: only the first line is ever kept.
    """
    text = scrub((str(exc).strip().splitlines() or [""])[0], keys)
    return f"{type(exc).__name__}: {text[:300]}"


def open_table(uri: str, version: int | None = None) -> Any:
    """The delta-rs DeltaTable at uri (at a version when given); TableError when it cannot be opened."""
    from deltalake import DeltaTable

    def new() -> Any:
        try:
            return DeltaTable(uri, version=version, storage_options=storage.storage_options(uri))
        except Exception as exc:
            at = f" at version {version}" if version is not None else ""
            raise TableError(f"cannot open the Delta table at {uri}{at} ({error_line(exc)})") from None

    return opened.reuse(uri, version, new)


# --- metadata -------------------------------------------------------------------------------------------------


def table_info(uri: str, version: int | None = None) -> TableInfo:
    """The table's metadata from its log. Falls back to reading the log itself when delta-rs cannot open it."""
    import pyarrow as pa

    try:
        dt = open_table(uri, version)
    except TableError as exc:
        raw = raw_log_info(uri, version, str(exc))
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
        schema=plain_schema(pa.schema(delta_schema.to_arrow())),
        partition_columns=tuple(meta.partition_columns or ()),
        reader_version=int(proto.min_reader_version),
        writer_version=int(proto.min_writer_version),
        reader_features=tuple(proto.reader_features) if proto.reader_features is not None else None,
        writer_features=tuple(proto.writer_features) if proto.writer_features is not None else None,
        configuration={str(k): str(v) for k, v in (meta.configuration or {}).items()},
        column_metadata=column_metadata,
    )


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


BIG_IN = 500
"""Above this many keys, a ``where_in`` read is not a SQL ``IN`` list (the reader evaluates a long literal list
row by row, slower than reading the column): the projected column is read whole and filtered by Arrow's hashed
``is_in``."""


def pushes_down(keys: Any) -> bool:
    """Whether a ``where_in`` read of these keys (a pyarrow Array; NULLs never match) is a SQL ``IN`` list the
    reader prunes by, rather than the projected column read whole and filtered in Arrow (past :data:`BIG_IN`)."""
    return len(keys) - keys.null_count <= BIG_IN


def scan(
    uri: str, columns: Sequence[str] | None = None, *, where_in: tuple[str, Any] | None = None,
    version: int | None = None, info: TableInfo | None = None,
) -> Iterator[Any]:
    """Record batches (plain arrow types, logical names) of the table at ``version`` (current when None).

    ``where_in`` = (column, pyarrow Array of keys) keeps only rows whose column equals one of the keys
    (pushed down to partition and file-statistics pruning up to ``BIG_IN`` keys; beyond, filtered in Arrow).
    No keys: nothing is read, nothing yielded.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keys: list[Any] = []
    predicate = None
    dt = open_table(uri, version)
    info = info or table_info(uri, version)
    wanted = list(columns) if columns is not None else list(info.schema.names)
    read = list(wanted)
    value_set = None
    if where_in is not None:
        keys = [k for k in where_in[1].to_pylist() if k is not None]
        if not keys:
            return
        if pushes_down(where_in[1]):
            predicate = in_predicate(where_in[0], where_in[1])
        else:
            value_set = pa.array(keys, info.schema.field(where_in[0]).type)
            read += [] if where_in[0] in read else [where_in[0]]
    target = target_schema(uri, info, read)
    scans[uri] += 1
    try:
        reader = pa.RecordBatchReader.from_stream(dt.scan(columns=read, predicate=predicate))
        batches = (conform(b, target) for b in reader if b.num_rows)
        if value_set is None:
            yield from batches
            return
        assert where_in is not None
        at = read.index(where_in[0])
        for chunk in chunked(batches):  # one hashed lookup per chunk: the key set is hashed once per call
            kept = chunk.filter(pc.is_in(chunk.column(at), value_set=value_set))
            yield from (b for b in (kept.select(wanted) if read != wanted else kept).to_batches() if b.num_rows)
    except TableError:
        raise
    except Exception as exc:
        raise TableError(f"reading the Delta table at {uri} failed ({error_line(exc, keys)})") from None


CHUNK_ROWS = 1 << 17
"""Rows gathered before a hashed ``is_in``: pyarrow hashes the value set at every call, so per reader batch
(8,192 rows) 10,000 keys were hashed 250 times over 2M rows."""


def chunked(batches: Iterable[Any], rows: int = CHUNK_ROWS) -> Iterator[Any]:
    """The batches gathered into pyarrow Tables of at least ``rows`` rows (the last may hold fewer)."""
    import pyarrow as pa

    held: list[Any] = []
    n = 0
    for batch in batches:
        held.append(batch)
        n += batch.num_rows
        if n >= rows:
            yield pa.Table.from_batches(held)
            held, n = [], 0
    if held:
        yield pa.Table.from_batches(held)


def target_schema(uri: str, info: TableInfo, columns: Sequence[str]) -> Any:
    """The logical schema of ``columns``; TableError naming the ones the table lacks."""
    import pyarrow as pa

    unknown = [c for c in columns if c not in info.schema.names]
    if unknown:
        raise TableError(f"the Delta table at {uri} has no column(s) {', '.join(map(repr, unknown))}")
    return pa.schema([info.schema.field(c) for c in columns])


def conform(batch: Any, target: Any) -> Any:
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
        if not pushes_down(where_in[1]):  # a long IN list is slower than a projected read filtered in Arrow
            return sum(b.num_rows for b in scan(uri, [where_in[0]], where_in=where_in, version=version))
        sql += " WHERE " + in_predicate(where_in[0], where_in[1])
    elif null_column is not None:
        sql += f" WHERE {_quote(null_column)} IS NULL"
    dt = open_table(uri, version)
    try:
        result = pa.table(QueryBuilder().register("t", dt).execute(sql).read_all())
    except Exception as exc:
        raise TableError(f"counting rows of the Delta table at {uri} failed ({error_line(exc, keys)})") from None
    return int(result.column(0)[0].as_py() or 0)


