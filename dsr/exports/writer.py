"""Per-subject export documents, streamed, with a bounded number of open files and bounded memory.

During a run each export-enabled table is scanned once for the whole batch. A :class:`PartWriter` (one per
table) keeps the matching rows in memory up to a bound (``buffer_bytes``), then spills them, sorted by request
id (a stable sort: rows of one request keep their scan order), into a numbered chunk file; chunks are merged
``fan_in`` at a time as they accumulate, and ``close`` merges what is left into one sorted part file and writes
the table's manifest (part file names and the row count of every request). The layout::

    <exports>/_parts/<run_id>/<table>/000042.jsonl    lines "<request_id>\\t<row as JSON>", sorted by request id
    <exports>/_parts/<run_id>/<table>/manifest.json   {"format": 1, "table": ..., "parts": [...], "rows": {...}}

(``<table>`` is the table name, percent-encoded if it holds anything but letters, digits, ``_ . - ~``). A
table's parts count only once its manifest exists, so an interrupted or failed export of a table is never
read. :func:`finish_documents` then writes one document per request, ``<exports>/<request_id>.json``, in one
streaming pass: a cursor per table walks its sorted part while the requests are taken in request-id order::

    {"schema_version": 1, "request_id": ..., "subject_id": ..., "exported_at": ...,
     "tables": {"<name>": [row, ...], ...}, "notes": {...}}

Values: timestamps and dates ISO-8601, decimals as strings, binary as base64.

Bounds: a writer holds no file open between calls; spilling holds 1 file open, a merge ``fan_in + 1``
(16 + 1 by default). Finishing holds one file per table plus the document being written. Memory: the row
buffer (``buffer_bytes``, 8 MiB by default) plus a 1 MiB read buffer per file being merged, and a row count per
request (per table) — never all the exported rows.

Files and folders: local documents are written to ``<request_id>.json.<run_id>.tmp`` in the same folder and
renamed; on S3 an object appears only when its upload completes (one that failed half way is deleted). Every
local file dsr writes here is mode 0600 and every folder it creates 0700, whatever the umask. Paths are built
from request ids, run ids, table names and counters only — never subject ids.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import heapq
import json
import math
import os
import re
import shutil
import urllib.parse
from collections.abc import Collection, Generator, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

from dsr.delta import storage
from dsr.errors import InputError, StepError

__all__ = [
    "PartWriter",
    "check_location",
    "document_uri",
    "finish_documents",
    "json_value",
    "remove_run_parts",
    "remove_stale_parts",
]

SCHEMA_VERSION = 1
BUFFER_BYTES = 8 << 20  # rows a PartWriter keeps in memory before it spills a sorted chunk
FAN_IN = 16  # chunks merged at once (a merge holds FAN_IN + 1 files open)
READ_BYTES = 1 << 20  # read buffer per part file
CHECK_CONNECT_TIMEOUT = 3.0  # seconds, for check_location on S3 (one attempt, no retries)
CHECK_REQUEST_TIMEOUT = 5.0

_FILE_MODE = 0o600
_DIR_MODE = 0o700
_ID_RE = r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}"  # request ids
_RUN_ID_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"  # run ids (Airflow's carry a '.' before the microseconds)
_ID = re.compile(_ID_RE)
_RUN_ID = re.compile(_RUN_ID_RE)
_TMP_DOCUMENT = re.compile(rf"({_ID_RE})\.json\.({_RUN_ID_RE})\.tmp")
_LEGACY_TMP_DOCUMENT = re.compile(rf"{_ID_RE}\.json\.tmp")
_MANIFEST = "manifest.json"
_KEY = itemgetter(0)
# per buffered row: the tuple and two bytes objects' headers, the list slot
_ROW_OVERHEAD = 160


def json_value(v: Any) -> Any:
    """One cell as JSON: ISO-8601 times, decimals as strings, bytes as base64, NaN/inf as strings."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC)
            return v.isoformat().replace("+00:00", "Z")
        return v.isoformat()
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, Mapping):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        # pyarrow map values arrive as a list of (key, value) tuples
        return [json_value(x) for x in v]
    return str(v)


def _dumps(obj: Any) -> str:
    # JSON escapes every control character, so a dumped value never holds a newline or a tab
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _check_id(value: object, what: str) -> str:
    """A request id (letters, digits, '_' and '-') or a run id (also '.') used in a file name; the value is
    not echoed."""
    run = what == "run id"
    if not isinstance(value, str) or not (_RUN_ID if run else _ID).fullmatch(value):
        allowed = "letters, digits, '_', '-' or '.'" if run else "letters, digits, '_' or '-'"
        raise ValueError(f"invalid {what} for a file name: 1-200 {allowed}, starting with a letter or digit")
    return value


def _table_folder(table: str) -> str:
    if not isinstance(table, str) or not table:
        raise ValueError("a table name is required")
    name = urllib.parse.quote(table, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


def document_uri(exports: str, request_id: str) -> str:
    return storage.join(exports, f"{_check_id(request_id, 'request id')}.json")


# --- storage: a local folder or an S3 prefix ----------------------------------------------------------------


class _Store:
    """The exports root. Local files go through the os module (explicit modes); S3 through pyarrow."""

    def __init__(self, exports: str) -> None:
        self.remote = storage.is_remote(exports)
        self.fs: Any = None
        if self.remote:
            self.fs, self.root = storage.filesystem(exports)
        else:
            self.root = os.path.abspath(exports)

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def makedirs(self, path: str) -> None:
        """Local: create path and its missing parents, each 0700. S3 has no folders (a marker would remain)."""
        if self.remote:
            return
        for _ in range(5):
            missing: list[str] = []
            p = path
            while not os.path.isdir(p):
                missing.append(p)
                parent = os.path.dirname(p)
                if parent == p:
                    break
                p = parent
            try:
                for d in reversed(missing):
                    try:
                        os.mkdir(d, _DIR_MODE)
                    except FileExistsError:
                        continue
                    os.chmod(d, _DIR_MODE)
                return
            except FileNotFoundError:  # a parent was tidied away meanwhile (an empty _parts): start again
                continue
        os.makedirs(path, _DIR_MODE, exist_ok=True)

    def open_write(self, path: str) -> Any:
        if self.remote:
            return self.fs.open_output_stream(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, _FILE_MODE)
        try:
            os.fchmod(fd, _FILE_MODE)  # the umask may have taken bits away; an existing file keeps its old mode
            return os.fdopen(fd, "wb", buffering=1 << 16)
        except BaseException:
            os.close(fd)
            raise

    def open_read(self, path: str) -> Any:
        if self.remote:
            return self.fs.open_input_stream(path)
        return open(path, "rb", buffering=0)  # closed by the caller

    def write_atomic(self, path: str, data: bytes) -> None:
        if self.remote:
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return
        tmp = path + ".tmp"
        with self.open_write(tmp) as out:
            out.write(data)
        os.replace(tmp, path)

    def read(self, path: str) -> bytes:
        with self.open_read(path) as f:
            return bytes(f.read())

    def delete_file(self, path: str) -> None:
        if self.remote:
            from pyarrow import fs

            if self.fs.get_file_info(path).type == fs.FileType.File:
                self.fs.delete_file(path)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def delete_tree(self, path: str) -> bool:
        """Remove a folder (an S3 prefix) and everything in it; whether there was one."""
        if self.remote:
            from pyarrow import fs

            if self.fs.get_file_info(path).type != fs.FileType.Directory:
                return False
            self.fs.delete_dir(path)
            return True
        if not os.path.lexists(path):
            return False
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except FileNotFoundError:  # removed meanwhile
            pass
        return True

    def folders(self, path: str) -> list[str]:
        """Names of the folders (S3: common prefixes) directly under path."""
        if self.remote:
            from pyarrow import fs

            infos = self.fs.get_file_info(fs.FileSelector(path, allow_not_found=True))
            return sorted(i.base_name for i in infos if i.type == fs.FileType.Directory)
        try:
            with os.scandir(path) as it:
                return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def tidy(self, *paths: str) -> None:
        """Local: remove these folders, innermost first, while they are empty."""
        if self.remote:
            return
        for p in paths:
            try:
                os.rmdir(p)
            except OSError:
                return


def _lines(f: Any) -> Iterator[bytes]:
    """The lines of a binary stream, without their newline."""
    rest = b""
    while True:
        chunk = f.read(READ_BYTES)
        if not chunk:
            break
        lines = bytes(chunk).split(b"\n")
        if rest:
            lines[0] = rest + lines[0]
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _entries(store: _Store, path: str) -> Generator[tuple[bytes, bytes], None, None]:
    """(request id, whole line) of each line of a part file."""
    with store.open_read(path) as f:
        for line in _lines(f):
            tab = line.find(b"\t")
            if tab <= 0:
                raise StepError(f"export part file {os.path.basename(path)} is corrupt")
            yield line[:tab], line


class _Output:
    """Writes lines to a stream in ~1 MiB blocks (few calls into pyarrow for S3)."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= READ_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._out.write(b"".join(self._pending))
            self._pending.clear()
            self._size = 0


# --- writing parts ------------------------------------------------------------------------------------------


class PartWriter:
    """Writes one table's rows for a batch of export requests: sorted chunk files, then one part + manifest.

    ``rows`` maps every request id to the number of rows written for it. Used as a context manager the parts
    are committed (merged, manifest written) on a clean exit and removed when the block raises.
    """

    def __init__(
        self, exports: str, run_id: str, table: str, request_ids: Iterable[str],
        *, buffer_bytes: int = BUFFER_BYTES, fan_in: int = FAN_IN,
    ) -> None:
        if buffer_bytes < 1 or fan_in < 2:
            raise ValueError("buffer_bytes must be >= 1 and fan_in >= 2")
        _check_id(run_id, "run id")
        self.table = table
        self.rows: dict[str, int] = {}
        self._keys: dict[str, bytes] = {}
        for rid in request_ids:
            self._keys[rid] = _check_id(rid, "request id").encode("ascii") + b"\t"
            self.rows[rid] = 0
        self._buffer_bytes = buffer_bytes
        self._fan_in = fan_in
        self._store = _Store(exports)
        self._dir = self._store.path("_parts", run_id, _table_folder(table))
        self._buf: list[tuple[bytes, bytes]] = []
        self._buf_size = 0
        self._chunks: list[tuple[int, str]] = []  # (level, file name), oldest first; levels never increase
        self._counter = 0
        self._closed = False
        self._store.delete_tree(self._dir)  # what an earlier attempt at this table in this run left
        self._store.makedirs(self._dir)

    def write(self, request_id: str, row: Mapping[str, Any]) -> None:
        if self._closed:
            raise ValueError("the part writer is closed")
        prefix = self._keys[request_id]
        line = prefix + _dumps({k: json_value(v) for k, v in row.items()}).encode("utf-8")
        self._buf.append((prefix[:-1], line))
        self._buf_size += len(line) + _ROW_OVERHEAD
        self.rows[request_id] += 1
        if self._buf_size >= self._buffer_bytes:
            self._spill()

    def close(self) -> None:
        """Merge what is left into one sorted part and write the manifest: from then on the parts count."""
        if self._closed:
            return
        if self._buf:
            self._spill(compact=False)
        while len(self._chunks) > 1:
            group = self._chunks[-self._fan_in:]
            merged = self._merge([name for _, name in group])
            self._chunks[-len(group):] = [(group[0][0] + 1, merged)]
        manifest = {"format": 1, "table": self.table, "parts": [name for _, name in self._chunks],
                    "rows": self.rows}
        self._store.write_atomic(f"{self._dir}/{_MANIFEST}", _dumps(manifest).encode("utf-8"))
        self._closed = True

    def abort(self) -> None:
        """Forget the buffered rows and remove this table's parts (best effort)."""
        self._closed = True
        self._buf = []
        with contextlib.suppress(OSError):
            self._store.delete_tree(self._dir)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:
            self.abort()
            raise

    def _spill(self, *, compact: bool = True) -> None:
        self._buf.sort(key=_KEY)  # stable: a request's rows keep their order
        name = self._write_chunk(self._buf)
        self._buf = []
        self._buf_size = 0
        self._chunks.append((0, name))
        while compact and len(self._chunks) >= self._fan_in:
            group = self._chunks[-self._fan_in:]
            if group[0][0] != group[-1][0]:
                break
            merged = self._merge([name for _, name in group])
            self._chunks[-self._fan_in:] = [(group[0][0] + 1, merged)]

    def _write_chunk(self, entries: Iterable[tuple[bytes, bytes]]) -> str:
        name = f"{self._counter:06d}.jsonl"
        self._counter += 1
        with self._store.open_write(f"{self._dir}/{name}") as f:
            out = _Output(f)
            for _, line in entries:
                out.write(line + b"\n")
            out.flush()
        return name

    def _merge(self, names: Sequence[str]) -> str:
        """Merge chunks that are consecutive in time, oldest first (heapq.merge is stable across its inputs)."""
        sources = [_entries(self._store, f"{self._dir}/{n}") for n in names]
        try:
            merged = self._write_chunk(heapq.merge(*sources, key=_KEY))
        finally:
            for s in sources:
                s.close()
        for n in names:
            self._store.delete_file(f"{self._dir}/{n}")
        return merged


# --- writing documents --------------------------------------------------------------------------------------


def _parts_error(table: str, run_id: str, problem: str) -> StepError:
    return StepError(f"export parts of table {table!r} for run {run_id} {problem}")


class _Cursor:
    """Walks one table's sorted parts, request id by request id."""

    def __init__(self, store: _Store, run_id: str, table: str) -> None:
        self.table = table
        self.run_id = run_id
        folder = store.path("_parts", run_id, _table_folder(table))
        try:
            manifest = json.loads(store.read(f"{folder}/{_MANIFEST}"))
        except FileNotFoundError:
            raise _parts_error(table, run_id, "are missing or incomplete: export the table again") from None
        except ValueError:
            raise _parts_error(table, run_id, "have a corrupt manifest: export the table again") from None
        if not isinstance(manifest, dict) or manifest.get("table") != table:
            raise _parts_error(table, run_id, "have a corrupt manifest: export the table again")
        self.expected: dict[str, int] = manifest["rows"]
        self._sources = [_entries(store, f"{folder}/{name}") for name in manifest["parts"]]
        self._it = heapq.merge(*self._sources, key=_KEY)
        self._head: tuple[bytes, bytes] | None = None

    def start(self) -> None:
        self._head = next(self._it, None)

    def rows(self, key: bytes) -> Iterator[bytes]:
        """The rows (JSON) of one request; rows of requests that come before it are skipped."""
        while self._head is not None and self._head[0] < key:
            self._head = next(self._it, None)
        cut = len(key) + 1
        while self._head is not None and self._head[0] == key:
            yield self._head[1][cut:]
            self._head = next(self._it, None)

    def close(self) -> None:
        for s in self._sources:
            s.close()


def finish_documents(
    exports: str, run_id: str, requests: Sequence[tuple[str, str]], tables: Sequence[str],
    *, exported_at: dt.datetime, notes: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """Write one document per (request_id, subject_id) from the tables' parts, in one streaming pass.

    ``tables`` gives the tables of every document, in order; each must have been written by a closed
    :class:`PartWriter` of this run whose request ids include every request here (else ``StepError``, before
    any document is written). ``notes`` maps a request id to its notes ({} when absent). Returns
    request_id -> document URI. Each document is complete or absent: a failure removes the one being written.
    """
    _check_id(run_id, "run id")
    reqs = sorted(requests, key=_KEY)
    for i, (rid, _) in enumerate(reqs):
        _check_id(rid, "request id")
        if i and reqs[i - 1][0] == rid:
            raise ValueError(f"request {rid} is listed twice")
    tables = list(tables)
    if len(set(tables)) != len(tables):
        raise ValueError("a table is listed twice")
    if not reqs:
        return {}
    notes = notes or {}
    store = _Store(exports)
    cursors: list[_Cursor] = []
    try:
        for table in tables:
            cursor = _Cursor(store, run_id, table)
            cursors.append(cursor)
            for rid, _ in reqs:
                if rid not in cursor.expected:
                    raise _parts_error(table, run_id, f"do not cover request {rid}: export the table again")
        for cursor in cursors:
            cursor.start()
        store.makedirs(store.root)
        stamp = json_value(exported_at)
        folder = document_uri(exports, "x")[:-len("x.json")]
        written: dict[str, str] = {}
        for rid, subject_id in reqs:
            _write_document(store, run_id, rid, subject_id, stamp, tables, cursors, notes.get(rid) or {})
            written[rid] = f"{folder}{rid}.json"
        return written
    finally:
        for cursor in cursors:
            cursor.close()


def _write_document(
    store: _Store, run_id: str, request_id: str, subject_id: str, stamp: Any, tables: Sequence[str],
    cursors: Sequence[_Cursor], notes: Mapping[str, str],
) -> None:
    final = store.path(f"{request_id}.json")
    path = final if store.remote else store.path(f"{request_id}.json.{run_id}.tmp")
    key = request_id.encode("ascii")
    f = store.open_write(path)
    try:
        out = _Output(f)
        head = {"schema_version": SCHEMA_VERSION, "request_id": request_id, "subject_id": subject_id,
                "exported_at": stamp}
        out.write(_dumps(head)[:-1].encode("utf-8") + b',\n"tables": {')
        for i, (table, cursor) in enumerate(zip(tables, cursors, strict=True)):
            out.write((("," if i else "") + "\n " + _dumps(table) + ": [").encode("utf-8"))
            n = 0
            for row in cursor.rows(key):
                out.write((b",\n  " if n else b"\n  ") + row)
                n += 1
            if n != cursor.expected[request_id]:
                raise _parts_error(table, run_id, f"are inconsistent for request {request_id}: "
                                                  f"{cursor.expected[request_id]} row(s) expected, {n} found")
            out.write(b"]")
        out.write(b"\n},\n\"notes\": " + _dumps(dict(notes)).encode("utf-8") + b"}\n")
        out.flush()
        f.close()
        if path != final:
            os.replace(path, final)
    except BaseException:
        # S3: closing completes the upload, so the half object is deleted; local: the temporary file goes
        with contextlib.suppress(Exception):
            f.close()
        with contextlib.suppress(Exception):
            store.delete_file(path)
        raise


# --- cleaning up --------------------------------------------------------------------------------------------


def remove_run_parts(exports: str, run_id: str) -> None:
    """Remove everything under ``<exports>/_parts/<run_id>/`` (nothing else; documents stay)."""
    store = _Store(exports)
    run = store.path("_parts", _check_id(run_id, "run id"))
    store.delete_tree(run)
    store.tidy(store.path("_parts"))


def remove_stale_parts(exports: str, live_run_ids: Collection[str]) -> int:
    """Remove the parts of every run not in ``live_run_ids``; returns how many runs' parts were removed.

    Local temporary documents (``<request_id>.json.<run_id>.tmp``) of those runs go too; one of the older
    ``<request_id>.json.tmp`` form names no run, so it is removed only when no run is live. Documents are
    never touched. (S3 has no temporary documents; pyarrow may leave an empty ``_parts/`` folder marker.)
    """
    store = _Store(exports)
    live = set(live_run_ids)
    parts = store.path("_parts")
    removed = 0
    for name in store.folders(parts):
        if name not in live and store.delete_tree(f"{parts}/{name}"):
            removed += 1
    if not store.remote:
        store.tidy(parts)
        try:
            with os.scandir(store.root) as it:
                names = [e.name for e in it if e.name.endswith(".tmp") and e.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            names = []
        for name in names:
            m = _TMP_DOCUMENT.fullmatch(name)
            if (m and m.group(2) not in live) or (not live and _LEGACY_TMP_DOCUMENT.fullmatch(name)):
                store.delete_file(store.path(name))
    return removed


# --- the exports location -----------------------------------------------------------------------------------


def check_location(exports: str) -> None:
    """Fail with one line (``InputError``) unless documents can be written at ``exports``; writes nothing.

    Local: an existing folder must be a writable directory; a missing one must have, as its nearest existing
    ancestor, a writable directory (the folders are created, 0700, when the first file is written). S3
    (``s3://`` or ``s3a://``): the bucket must exist and answer, with short timeouts and no retries.
    """
    if not isinstance(exports, str) or not exports.strip():
        raise InputError("exports location is empty: use a local folder or s3://bucket/prefix")
    label = f"exports location {exports!r}"
    if "://" in exports:
        scheme, _, rest = exports.partition("://")
        if scheme not in ("s3", "s3a"):
            raise InputError(f"{label}: unsupported scheme {scheme + '://'!r}: use a local folder or "
                             "s3://bucket/prefix")
        if not rest.split("/", 1)[0]:
            raise InputError(f"{label}: no bucket: use s3://bucket/prefix")
        _check_s3(exports, label)
    else:
        _check_local(exports, label)


def _check_local(exports: str, label: str) -> None:
    path = os.path.abspath(exports)
    if os.path.lexists(path):
        if not os.path.exists(path):
            raise InputError(f"{label}: is a broken symbolic link")
        if not os.path.isdir(path):
            raise InputError(f"{label}: exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"{label}: the directory is not writable")
        return
    ancestor = os.path.dirname(path)
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise InputError(f"{label}: cannot be created: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{label}: cannot be created: {ancestor} is not writable")


def _fail_fast_s3(exports: str) -> tuple[Any, str]:
    """storage.filesystem's S3 filesystem, with short timeouts and a single attempt."""
    from pyarrow import fs

    base, path = storage.filesystem(exports)
    try:
        _, (kwargs,) = base.__reduce__()  # the options storage.filesystem chose (pickling support)
        kwargs = dict(kwargs)
    except (TypeError, ValueError):  # not a plain S3FileSystem: keep it as it is
        return base, path
    kwargs.update(connect_timeout=CHECK_CONNECT_TIMEOUT, request_timeout=CHECK_REQUEST_TIMEOUT,
                  retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=1))
    return fs.S3FileSystem(**kwargs), path


def _check_s3(exports: str, label: str) -> None:
    from pyarrow import fs

    filesys, path = _fail_fast_s3(exports)
    bucket, _, prefix = path.partition("/")
    try:
        if filesys.get_file_info(bucket).type == fs.FileType.NotFound:
            raise InputError(f"{label}: bucket {bucket!r} does not exist")
        if prefix:
            filesys.get_file_info(path)  # can we list under the prefix
    except OSError as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise InputError(f"{label}: S3 cannot be reached or refused access: {reason}") from None
