"""Per-subject export documents, streamed.

During a run each export-enabled table is scanned once for the whole batch; each matching row becomes a JSON
line in a part file ``<exports>/_parts/<run_id>/<request_id>/<table>.jsonl``. ``finish`` then streams the parts
of each request into one document ``<exports>/<request_id>.json``::

    {"schema_version": 1, "request_id": ..., "subject_id": ..., "exported_at": ...,
     "tables": {"<name>": [row, ...], ...}, "notes": {...}}

Values: timestamps and dates ISO-8601, decimals as strings, binary as base64. Paths are built from request
ids and table names only. Memory is bounded by one scan batch, not by the table or by the subjects' rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from dsr import storage

__all__ = ["PartWriter", "document_uri", "finish_document", "json_value", "part_uri", "remove_parts"]

SCHEMA_VERSION = 1


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
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def part_uri(exports: str, run_id: str, request_id: str, table: str) -> str:
    return storage.join(exports, "_parts", run_id, request_id, f"{table}.jsonl")


def document_uri(exports: str, request_id: str) -> str:
    return storage.join(exports, f"{request_id}.json")


def _makedirs(uri: str) -> None:
    if storage.is_remote(uri):
        return  # object stores have no folders; creating one would leave a marker object behind
    filesys, path = storage.filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    filesys.create_dir(parent, recursive=True)


class PartWriter:
    """Writes one table's rows for a batch of export requests into per-request part files."""

    def __init__(self, exports: str, run_id: str, table: str, request_ids: Iterable[str]) -> None:
        self._streams: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        for rid in request_ids:
            uri = part_uri(exports, run_id, rid, table)
            _makedirs(uri)
            filesys, path = storage.filesystem(uri)
            self._streams[rid] = filesys.open_output_stream(path)
            self.rows[rid] = 0

    def write(self, request_id: str, row: Mapping[str, Any]) -> None:
        line = _dumps({k: json_value(v) for k, v in row.items()}) + "\n"
        self._streams[request_id].write(line.encode("utf-8"))
        self.rows[request_id] += 1

    def close(self) -> None:
        for s in self._streams.values():
            s.close()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy_lines(src_uri: str, out: Any) -> None:
    filesys, path = storage.filesystem(src_uri)
    with filesys.open_input_stream(path) as f:
        first = True
        buffered = b""
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                if line:
                    out.write(b"\n  " if first else b",\n  ")
                    out.write(line)
                    first = False
        if buffered:
            out.write(b"\n  " if first else b",\n  ")
            out.write(buffered)


def finish_document(
    exports: str, run_id: str, request_id: str, subject_id: str, tables: Iterable[str],
    *, exported_at: dt.datetime, notes: Mapping[str, str] | None = None,
) -> str:
    """Stream the parts of one request into its document; returns the document's URI.

    Local documents are written to a temporary name and renamed, so a reader never sees half a document;
    S3 objects appear only when their upload completes.
    """
    final = document_uri(exports, request_id)
    _makedirs(final)
    filesys, final_path = storage.filesystem(final)
    path = final_path if storage.is_remote(final) else final_path + ".tmp"
    with filesys.open_output_stream(path) as out:
        head = {
            "schema_version": SCHEMA_VERSION,
            "request_id": request_id,
            "subject_id": subject_id,
            "exported_at": json_value(exported_at),
        }
        out.write(_dumps(head)[:-1].encode("utf-8") + b',\n"tables": {')
        for i, table in enumerate(tables):
            out.write((("," if i else "") + "\n " + _dumps(table) + ": [").encode("utf-8"))
            _copy_lines(part_uri(exports, run_id, request_id, table), out)
            out.write(b"]")
        out.write(b"\n},\n\"notes\": " + _dumps(dict(notes or {})).encode("utf-8") + b"}\n")
    if path != final_path:
        filesys.move(path, final_path)
    return final


def remove_parts(exports: str, run_id: str, request_id: str) -> None:
    from pyarrow import fs

    uri = storage.join(exports, "_parts", run_id, request_id)
    filesys, path = storage.filesystem(uri)
    if filesys.get_file_info(path).type != fs.FileType.NotFound:
        filesys.delete_dir(path)
    if not storage.is_remote(exports):  # tidy the empty run and _parts folders
        for folder in (storage.join(exports, "_parts", run_id), storage.join(exports, "_parts")):
            try:
                os.rmdir(folder)
            except OSError:
                break
