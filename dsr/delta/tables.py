"""Small delta-rs helpers shared by the control and audit tables: open, create, read, optimistic commits."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import unquote

from dsr.delta import opened, storage
from dsr.delta.logstats import files_with_values
from dsr.errors import ConflictError, StoreError

__all__ = [
    "check_files",
    "commit_properties",
    "compact_small_files",
    "create_if_missing",
    "native_filesystem",
    "open_table",
    "optimistic",
    "pyarrow_dataset",
    "read_all",
    "read_files",
    "read_where",
    "reads",
    "schema_drift",
    "table_key",
]

T = TypeVar("T")


def _broken(uri: str, exc: BaseException) -> StoreError:
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return StoreError(f"dsr's table at {uri} cannot be read ({type(exc).__name__}: {text}); nothing was written: "
                      "restore it (Delta time travel or a backup) before running dsr again")


def open_table(uri: str) -> Any:
    """The DeltaTable at uri, or None when none exists there yet. A table whose log cannot be read (truncated
    commit, corrupt checkpoint) raises StoreError: one line, exit 2, nothing written."""
    from deltalake import DeltaTable

    if not storage.delta_table_exists(uri):
        opened.forget(uri)
        return None

    def new() -> Any:
        try:
            return DeltaTable(uri, storage_options=storage.storage_options(uri))
        except Exception as exc:
            raise _broken(uri, exc) from None

    return opened.reuse(uri, None, new)


def create_if_missing(uri: str, schema: Any, *, name: str, description: str) -> Any:
    """Open the table at uri, creating it empty with schema if missing (a lost creation race is fine)."""
    from deltalake import DeltaTable

    dt = open_table(uri)
    if dt is not None:
        return dt
    if not storage.is_remote(uri):
        import os

        os.makedirs(uri, exist_ok=True)
    try:
        return DeltaTable.create(
            uri,
            schema=schema,
            mode="ignore",
            name=name,
            description=description,
            storage_options=storage.storage_options(uri),
        )
    except Exception:
        dt = open_table(uri)
        if dt is None:
            raise
        return dt


def native_filesystem(dt: Any) -> Any:
    """A native pyarrow filesystem rooted at the table's directory (local or S3).

    deltalake's default for ``to_pyarrow_dataset`` is a ``PyFileSystem`` over its Python-backed
    ``DeltaStorageHandler``. An Arrow worker thread often drops the last reference to it (through the async
    scan's fragments) just after ``to_table()`` returned; its destructor then takes the GIL. If that happens
    while the interpreter exits, CPython 3.11 ends the thread with ``pthread_exit``, the forced unwind meets
    Arrow's C++ destructor and ``std::terminate`` aborts the process (SIGABRT, exit 134, "terminate called
    without an active exception") — in about a third of short runs such as ``dsr requests``. A native
    filesystem holds no Python object, so exits are clean.
    """
    from urllib.parse import unquote, urlparse

    from pyarrow import fs

    uri = str(dt.table_uri)
    if uri.startswith("file://"):
        uri = unquote(urlparse(uri).path)
    filesys, root = storage.filesystem(uri.rstrip("/") if storage.is_remote(uri) else uri)
    return fs.SubTreeFileSystem(root, filesys)


def pyarrow_dataset(dt: Any, **kwargs: Any) -> Any:
    """``dt.to_pyarrow_dataset(**kwargs)`` read through :func:`native_filesystem` (see there why)."""
    kwargs.setdefault("filesystem", native_filesystem(dt))
    return dt.to_pyarrow_dataset(**kwargs)


reads: Counter[tuple[str, str]] = Counter()
"""Reads of dsr's own tables in this process: (table uri, 'full' or 'filtered') -> count (tests assert them)."""


def table_key(dt: Any) -> str:
    """The uri a table is counted under in ``reads`` (as opened: local paths without file://)."""
    from urllib.parse import unquote, urlparse

    uri = str(dt.table_uri)
    return (unquote(urlparse(uri).path) if uri.startswith("file://") else uri).rstrip("/")


def add_missing_columns(dt: Any, schema: Any, names: Iterable[str]) -> None:
    """Add the nullable columns ``names`` of ``schema`` the table lacks (one ADD COLUMN commit; none when it has
    them all): dsr's own tables gain columns in later releases."""
    from deltalake.schema import Field

    have = set(dt.schema().to_arrow().names)
    missing = [n for n in names if n not in have]
    if not missing:
        return
    try:
        dt.alter.add_columns([Field.from_arrow(schema.field(n)) for n in missing])
    except Exception:
        dt.update_incremental()  # another writer added them first
        if any(n not in set(dt.schema().to_arrow().names) for n in missing):
            raise


def _filled(table: Any, schema: Any, fill: Iterable[str]) -> Any:
    """The columns ``fill`` of ``schema`` a read lacks (a table written before they were added), as NULL."""
    import pyarrow as pa

    for n in fill:
        if schema is not None and n not in table.column_names:
            table = table.append_column(schema.field(n), pa.nulls(table.num_rows, schema.field(n).type))
    return table


def read_all(dt: Any, columns: list[str] | None = None, *, schema: Any = None, fill: Iterable[str] = ()) -> Any:
    """The whole current version of a (small) table as a pyarrow Table. A missing or unreadable data file, or
    (when ``schema`` is given) columns that differ from it, raise StoreError."""
    reads[(table_key(dt), "full")] += 1
    try:
        table = pyarrow_dataset(dt).to_table(columns=columns)
    except Exception as exc:
        raise _broken(str(dt.table_uri), exc) from None
    return _checked(dt, _filled(table, schema, fill), schema)


def read_where(
    dt: Any, column: str, values: Iterable[str], columns: list[str] | None = None, *, schema: Any = None,
    also: Any = None, fill: Iterable[str] = (),
) -> Any:
    """The rows whose ``column`` is one of ``values`` (a pushed-down filter: files and row groups whose
    statistics rule the values out are not read), and that match the dataset expression ``also`` when given (on
    a column whose statistics prune, such as an append time). Errors as :func:`read_all`."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    reads[(table_key(dt), "filtered")] += 1
    wanted = pa.array(sorted(set(values)), pa.string())
    # Only the files whose range in the log holds a value (the log's statistics prune every file, string views
    # or not). First without a cast on the column, so that the files' statistics prune (a cast hides the column from
    # them). Files that MERGE rewrote store string_view, whose statistics pyarrow cannot compare with strings
    # (ArrowNotImplementedError, never a wrong answer): then again with the cast, reading every file, and with
    # the cast straight away for this table's column from then on in this process.
    dataset = _holding(pyarrow_dataset(dt), files_with_values(dt, column, wanted.to_pylist()))
    where = (table_key(dt), column)
    plain, cast = ds.field(column).isin(wanted), ds.field(column).cast(pa.string()).isin(wanted)
    for flt in ((cast,) if where in _NEEDS_CAST else (plain, cast)):
        try:
            table = dataset.to_table(columns=columns, filter=flt if also is None else also & flt)
            break
        except pa.ArrowNotImplementedError:
            _NEEDS_CAST.add(where)
        except Exception as exc:
            raise _broken(str(dt.table_uri), exc) from None
    else:
        raise _broken(str(dt.table_uri), RuntimeError(f"no filter on {column!r} could be evaluated"))
    return _checked(dt, _filled(table, schema, fill), schema)


def read_files(dt: Any, paths: Iterable[str], columns: list[str] | None = None) -> Any:
    """The rows of some live files of the table (paths relative to it, unquoted). Should a path not name a live
    file, the whole table is read (see :func:`_holding`): more rows than asked, never fewer. Errors as
    :func:`read_all`."""
    reads[(table_key(dt), "filtered")] += 1
    try:
        return _holding(pyarrow_dataset(dt), set(paths)).to_table(columns=columns)
    except Exception as exc:
        raise _broken(str(dt.table_uri), exc) from None


def _holding(dataset: Any, keep: set[str] | None) -> Any:
    """The dataset cut to the files in ``keep`` (None: all). Should a path of the log not name a file of the
    dataset, the dataset stays whole: a file is never skipped because two spellings of its path differ."""
    import pyarrow.dataset as ds

    if keep is None:
        return dataset
    fragments = list(dataset.get_fragments())
    if not keep <= {f.path for f in fragments}:
        return dataset
    return ds.FileSystemDataset([f for f in fragments if f.path in keep], dataset.schema, dataset.format,
                                dataset.filesystem)


_NEEDS_CAST: set[tuple[str, str]] = set()
"""(table, column) whose filter needed the cast in this process (a cast is always right, only slower)."""


def check_files(dt: Any) -> None:
    """StoreError when a data file of the table's current version is missing (looks at the files, reads none)."""
    import pyarrow as pa
    from pyarrow import fs

    try:
        paths = [str(p) for p in pa.table(dt.get_add_actions(flatten=False)).column("path").to_pylist()]
        filesys = native_filesystem(dt)
        missing = [i.path for i in filesys.get_file_info([unquote(p) for p in paths])
                   if i.type == fs.FileType.NotFound]
    except Exception as exc:
        raise _broken(str(dt.table_uri), exc) from None
    if missing:
        raise _broken(str(dt.table_uri), FileNotFoundError(f"{len(missing)} data file(s) missing, e.g. {missing[0]}"))


def _checked(dt: Any, table: Any, schema: Any) -> Any:
    if schema is not None:
        problem = schema_drift(schema, table.schema)
        if problem:
            raise StoreError(f"dsr's table at {dt.table_uri} has an unexpected schema ({problem}); nothing was "
                             "written: restore it (Delta time travel or a backup) before running dsr again")
    return table


def schema_drift(expected: Any, actual: Any) -> str | None:
    """How ``actual`` differs from ``expected`` (names and types; views count as their plain types), or None."""
    from dsr.delta.access import plain_type

    want = {f.name: plain_type(f.type) for f in expected}
    have = {f.name: plain_type(f.type) for f in actual}
    for name in want:
        if name not in have:
            return f"column {name!r} missing"
    for name in have:
        if name not in want:
            return f"unexpected column {name!r}"
    for name, t in want.items():
        if not have[name].equals(t):
            return f"column {name!r} is {have[name]}, expected {t}"
    return None


def commit_properties(metadata: dict[str, str] | None = None, *, retries: int = 0) -> Any:
    """Commit properties with no silent rebase (retries=0): any concurrent commit makes ours fail."""
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata=metadata or None, max_commit_retries=retries)


def optimistic(attempt: Callable[[], T], *, what: str, tries: int = 50) -> T:
    """Run ``attempt`` (which re-reads the table and commits) until no concurrent commit beats it."""
    from deltalake.exceptions import CommitFailedError

    delay = 0.02
    for _ in range(tries):
        try:
            return attempt()
        except CommitFailedError:
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 1.0)
    raise ConflictError(f"{what}: gave up after {tries} concurrent-commit conflicts; try again")


def compact_small_files(uri: str, *, max_files: int = 64) -> int:
    """Bin-pack a small bookkeeping table (control, audit) once it has more than max_files files.

    Each intake, claim and audit append adds a small file; compaction keeps reads fast. It rewrites files only
    (same rows, same values), so the audit hash chain is untouched. Returns the number of files removed.
    """
    dt = open_table(uri)
    if dt is None or len(dt.file_uris()) <= max_files:
        return 0
    from deltalake.exceptions import CommitFailedError

    try:
        metrics = dt.optimize.compact(commit_properties=commit_properties({"dsr.operation": "compact"}, retries=3))
    except CommitFailedError:
        return 0  # a concurrent writer won; the next run compacts
    return int(metrics.get("numFilesRemoved", 0))
