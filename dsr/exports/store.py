"""Where export files live: a local folder or an S3 prefix (modes 0600/0700 locally), the ids and names used
in paths (request ids, run ids, table names, counters — never subject ids), and JSON encoding of values."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import json
import math
import os
import re
import shutil
import urllib.parse
from collections.abc import Generator, Iterator, Mapping
from operator import itemgetter
from typing import Any

from dsr.delta import storage
from dsr.errors import StepError

SCHEMA_VERSION = 2

FOUND_BY = "_found_by"
"""The member of each exported row (schema_version 2) that says by which subject columns, of which identifier
kinds, the row was found: ``[{"column": ..., "kind": ...}]``."""
READ_BYTES = 1 << 20  # read buffer per part file

_FILE_MODE = 0o600
_DIR_MODE = 0o700
_ID_RE = r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}"  # request ids
_RUN_ID_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"  # run ids (Airflow's carry a '.' before the microseconds)
_ID = re.compile(_ID_RE)
_RUN_ID = re.compile(_RUN_ID_RE)
TMP_DOCUMENT = re.compile(rf"({_ID_RE})\.(?:json|zip|zip\.sealed)\.({_RUN_ID_RE})\.tmp")
LEGACY_TMP_DOCUMENT = re.compile(rf"{_ID_RE}\.json\.tmp")
MANIFEST = "manifest.json"
SORT_KEY = itemgetter(0)
# per buffered row: the tuple and two bytes objects' headers, the list slot
ROW_OVERHEAD = 160


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


def json_columns(batch: Any) -> list[list[Any]]:
    """Every column of a record batch as JSON-ready values (:func:`json_value`), converted a column at a time:
    text, integers, booleans and finite floats are taken as Arrow gives them; other types go value by value.
    The same values as :func:`json_value` on each cell."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for column in batch.columns:
        t = column.type
        values = column.to_pylist()
        native = (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
                  or pa.types.is_boolean(t) or pa.types.is_null(t))
        if pa.types.is_floating(t) and (len(column) == column.null_count or pc.all(pc.is_finite(column)).as_py()):
            native = True
        out.append(values if native else [json_value(v) for v in values])
    return out


def dumps(obj: Any) -> str:
    # JSON escapes every control character, so a dumped value never holds a newline or a tab
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def check_id(value: object, what: str) -> str:
    """A request id (letters, digits, '_' and '-') or a run id (also '.') used in a file name; the value is
    not echoed."""
    run = what == "run id"
    if not isinstance(value, str) or not (_RUN_ID if run else _ID).fullmatch(value):
        allowed = "letters, digits, '_', '-' or '.'" if run else "letters, digits, '_' or '-'"
        raise ValueError(f"invalid {what} for a file name: 1-200 {allowed}, starting with a letter or digit")
    return value


def table_folder(table: str) -> str:
    if not isinstance(table, str) or not table:
        raise ValueError("a table name is required")
    name = urllib.parse.quote(table, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


def document_uri(exports: str, request_id: str, *, sealed: bool = False) -> str:
    """Where a request's export package is: ``<exports>/<request_id>.zip`` (``.zip.sealed`` when encrypted)."""
    return storage.join(exports, f"{check_id(request_id, 'request id')}.zip" + (".sealed" if sealed else ""))


# --- storage: a local folder or an S3 prefix ----------------------------------------------------------------


class Store:
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


def lines(f: Any) -> Iterator[bytes]:
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


def entries(store: Store, path: str) -> Generator[tuple[bytes, bytes], None, None]:
    """(request id, whole line) of each line of a part file."""
    with store.open_read(path) as f:
        for line in lines(f):
            tab = line.find(b"\t")
            if tab <= 0:
                raise StepError(f"export part file {os.path.basename(path)} is corrupt")
            yield line[:tab], line


class Output:
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


