"""Export packages: one per request (see :mod:`dsr.exports.package`), written in one streaming pass over the
tables' sorted parts."""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsr.core.identifiers import IMPLICIT, Identifier
from dsr.errors import StepError
from dsr.exports.package import JSON_NAME, PackageZip, csv_name, readme
from dsr.exports.s3upload import S3Upload
from dsr.exports.sealing import Sealer
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
        self.columns: list[str] | None = manifest.get("columns")
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


@dataclass(frozen=True)
class PackageOptions:
    """How one request's package is made: its format (json, csv) and the recipient public key (PEM) it is
    encrypted to, if any."""

    format: str = "json"
    recipient_key: str | None = None


@dataclass(frozen=True)
class Person:
    """Whose package: the request id, the subject id as filed (kept in the document for readers of version 1)
    and the person's identifiers (the request's ``ids``: the frozen resolved set once there is one). Personal
    data: never in a repr."""

    request_id: str
    subject_id: str
    identifiers: tuple[Identifier, ...]

    @classmethod
    def of(cls, item: Person | tuple[str, str]) -> Person:
        """A Person, or a (request id, subject id) pair: a person of the implicit kind, known by that id."""
        if isinstance(item, Person):
            return item
        rid, sid = item
        return cls(rid, sid, (Identifier(IMPLICIT, sid),))

    def __repr__(self) -> str:
        return f"Person(request_id={self.request_id!r}, <withheld>)"

    def identifiers_json(self) -> list[dict[str, str]]:
        """``[{"kind": K, "value": V}, ...]``, as the document and the manifest list them."""
        return [{"kind": i.kind, "value": i.value} for i in self.identifiers]


@dataclass(frozen=True)
class Stored:
    """Where packages go: server-side encryption on S3 (ignored locally)."""

    sse: str | None = None
    kms_key_id: str | None = None


def finish_documents(
    exports: str, run_id: str, requests: Sequence[Person | tuple[str, str]], tables: Sequence[str],
    *, exported_at: dt.datetime, notes: Mapping[str, Mapping[str, str]] | None = None, ttl_days: int = 30,
    options: Mapping[str, PackageOptions] | None = None, stored: Stored = Stored(),
) -> dict[str, str]:
    """Write one package per person (:class:`Person`; a (request_id, subject_id) pair is a person of the implicit
    kind) from the tables' parts, in one streaming pass.

    ``tables`` gives the tables of every package, in order; each must have been written by a closed
    :class:`PartWriter` of this run whose request ids include every request here (else ``StepError``, before
    any package is written). ``notes`` maps a request id to its notes ({} when absent), ``options`` to its
    :class:`PackageOptions` (json, unencrypted when absent). Returns request_id -> package URI. Each package is
    complete or absent: a failure removes the one being written. Long because every check comes before the
    first write, and the cursors must outlive the whole pass.
    """
    check_id(run_id, "run id")
    reqs = sorted((Person.of(p) for p in requests), key=lambda p: p.request_id)
    for i, p in enumerate(reqs):
        check_id(p.request_id, "request id")
        if i and reqs[i - 1].request_id == p.request_id:
            raise ValueError(f"request {p.request_id} is listed twice")
    tables = list(tables)
    if len(set(tables)) != len(tables):
        raise ValueError("a table is listed twice")
    if not reqs:
        return {}
    notes = notes or {}
    options = options or {}
    store = Store(exports)
    cursors: list[_Cursor] = []
    try:
        for table in tables:
            cursor = _Cursor(store, run_id, table)
            cursors.append(cursor)
            for p in reqs:
                if p.request_id not in cursor.expected:
                    raise _parts_error(table, run_id,
                                       f"do not cover request {p.request_id}: export the table again")
        for cursor in cursors:
            cursor.start()
        store.makedirs(store.root)
        head = {"generated_at": json_value(exported_at),
                "expires_at": json_value(exported_at + dt.timedelta(days=ttl_days))}
        written: dict[str, str] = {}
        for person in reqs:
            rid = person.request_id
            opts = options.get(rid) or PackageOptions()
            uri = document_uri(exports, rid, sealed=opts.recipient_key is not None)
            sink = _Sink(store, uri, run_id, stored)
            pkg: PackageZip | None = None
            try:
                pkg = PackageZip(Sealer(sink, opts.recipient_key) if opts.recipient_key else sink)
                _write_package(pkg, run_id, person, head, opts.format, tables, cursors, notes.get(rid) or {})
            except BaseException:
                sink.abort()
                if pkg is not None:
                    pkg.discard()
                raise
            sink.commit()
            written[rid] = uri
        return written
    finally:
        for cursor in cursors:
            cursor.close()


class _Sink:
    """A package's destination: locally a 0600 temporary file renamed into place; on S3 an upload that
    appears only when complete (with server-side encryption)."""

    def __init__(self, store: Store, uri: str, run_id: str, stored: Stored) -> None:
        self._store = store
        self._final = store.path(os.path.basename(uri))
        self._tmp = f"{self._final}.{run_id}.tmp"
        self._s3 = S3Upload(uri, stored.sse, stored.kms_key_id) if store.remote else None
        self._f = self._s3 if self._s3 is not None else store.open_write(self._tmp)
        self._aborted = False

    def write(self, data: bytes) -> int:
        if not self._aborted:  # after abort, what the zip still writes as it is discarded goes nowhere
            self._f.write(data)
        return len(data)

    def flush(self) -> None:
        if not self._aborted:
            self._f.flush()

    def close(self) -> None:
        if not self._aborted:
            self._f.close()

    def commit(self) -> None:
        if self._s3 is None:
            os.replace(self._tmp, self._final)

    def abort(self) -> None:
        self._aborted = True
        if self._s3 is not None:
            with contextlib.suppress(Exception):
                self._s3.abort()
            return
        with contextlib.suppress(Exception):
            self._f.close()
        self._store.delete_file(self._tmp)


def _write_package(
    pkg: PackageZip, run_id: str, person: Person, head: Mapping[str, Any], fmt: str,
    tables: Sequence[str], cursors: Sequence[_Cursor], notes: Mapping[str, str],
) -> None:
    request_id = person.request_id
    whose = {"request_id": request_id, "subject_id": person.subject_id, "identifiers": person.identifiers_json()}
    key = request_id.encode("ascii")
    pkg.text("README.txt", readme(request_id, fmt, str(head["expires_at"]), tables))
    counts: dict[str, dict[str, Any]] = {}
    if fmt == "csv":
        for table, cursor in zip(tables, cursors, strict=True):
            rows = cursor.rows(key)
            columns = cursor.columns
            if columns is None:  # parts written before the manifest named its columns: the first row's keys
                first = next(rows, None)
                columns = list(json.loads(first)) if first is not None else []
                rows = itertools.chain([first] if first is not None else [], rows)
            n = pkg.csv_rows(csv_name(table), columns, rows)
            _check_count(table, run_id, request_id, cursor, n)
            counts[table] = {"rows": n, "file": csv_name(table)}
    else:
        with pkg.member(JSON_NAME) as m:
            out = Output(m)
            doc = {"schema_version": SCHEMA_VERSION, **whose, "exported_at": head["generated_at"]}
            out.write(dumps(doc)[:-1].encode("utf-8") + b',\n"tables": {')
            for i, (table, cursor) in enumerate(zip(tables, cursors, strict=True)):
                out.write((("," if i else "") + "\n " + dumps(table) + ": [").encode("utf-8"))
                n = 0
                for row in cursor.rows(key):
                    out.write((b",\n  " if n else b"\n  ") + row)
                    n += 1
                _check_count(table, run_id, request_id, cursor, n)
                counts[table] = {"rows": n, "file": JSON_NAME}
                out.write(b"]")
            out.write(b"\n},\n\"notes\": " + dumps(dict(notes)).encode("utf-8") + b"}\n")
            out.flush()
    pkg.finish({**whose, "format": fmt, **head}, counts, notes)


def _check_count(table: str, run_id: str, request_id: str, cursor: _Cursor, n: int) -> None:
    if n != cursor.expected[request_id]:
        raise _parts_error(table, run_id, f"are inconsistent for request {request_id}: "
                                          f"{cursor.expected[request_id]} row(s) expected, {n} found")
