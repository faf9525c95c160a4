"""Export documents: one per request, written in one streaming pass over the tables' sorted parts."""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dsr.errors import StepError
from dsr.exports.store import (
    MANIFEST,
    SCHEMA_VERSION,
    SORT_KEY,
    Output,
    Store,
    check_id,
    document_uri,
    dumps,
    entries,
    json_value,
    table_folder,
)

# --- writing documents --------------------------------------------------------------------------------------


def _parts_error(table: str, run_id: str, problem: str) -> StepError:
    return StepError(f"export parts of table {table!r} for run {run_id} {problem}")


class _Cursor:
    """Walks one table's sorted parts, request id by request id."""

    def __init__(self, store: Store, run_id: str, table: str) -> None:
        self.table = table
        self.run_id = run_id
        folder = store.path("_parts", run_id, table_folder(table))
        try:
            manifest = json.loads(store.read(f"{folder}/{MANIFEST}"))
        except FileNotFoundError:
            raise _parts_error(table, run_id, "are missing or incomplete: export the table again") from None
        except ValueError:
            raise _parts_error(table, run_id, "have a corrupt manifest: export the table again") from None
        if not isinstance(manifest, dict) or manifest.get("table") != table:
            raise _parts_error(table, run_id, "have a corrupt manifest: export the table again")
        self.expected: dict[str, int] = manifest["rows"]
        self._sources = [entries(store, f"{folder}/{name}") for name in manifest["parts"]]
        self._it = heapq.merge(*self._sources, key=SORT_KEY)
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
    check_id(run_id, "run id")
    reqs = sorted(requests, key=SORT_KEY)
    for i, (rid, _) in enumerate(reqs):
        check_id(rid, "request id")
        if i and reqs[i - 1][0] == rid:
            raise ValueError(f"request {rid} is listed twice")
    tables = list(tables)
    if len(set(tables)) != len(tables):
        raise ValueError("a table is listed twice")
    if not reqs:
        return {}
    notes = notes or {}
    store = Store(exports)
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
    store: Store, run_id: str, request_id: str, subject_id: str, stamp: Any, tables: Sequence[str],
    cursors: Sequence[_Cursor], notes: Mapping[str, str],
) -> None:
    final = store.path(f"{request_id}.json")
    path = final if store.remote else store.path(f"{request_id}.json.{run_id}.tmp")
    key = request_id.encode("ascii")
    f = store.open_write(path)
    try:
        out = Output(f)
        head = {"schema_version": SCHEMA_VERSION, "request_id": request_id, "subject_id": subject_id,
                "exported_at": stamp}
        out.write(dumps(head)[:-1].encode("utf-8") + b',\n"tables": {')
        for i, (table, cursor) in enumerate(zip(tables, cursors, strict=True)):
            out.write((("," if i else "") + "\n " + dumps(table) + ": [").encode("utf-8"))
            n = 0
            for row in cursor.rows(key):
                out.write((b",\n  " if n else b"\n  ") + row)
                n += 1
            if n != cursor.expected[request_id]:
                raise _parts_error(table, run_id, f"are inconsistent for request {request_id}: "
                                                  f"{cursor.expected[request_id]} row(s) expected, {n} found")
            out.write(b"]")
        out.write(b"\n},\n\"notes\": " + dumps(dict(notes)).encode("utf-8") + b"}\n")
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


