"""One export package per request: a zip holding a README for the person, the data files and ``manifest.json``.

Layout of ``<request_id>.zip`` (``<request_id>.zip.sealed`` when encrypted to a recipient key, see
:mod:`dsr.exports.sealing`)::

    README.txt          what the files are, how values are written, when the package expires
    export.json         format json: the export document (schema_version 2, see dsr.exports.documents)
    <table>.csv         format csv: one file per table, a header row, RFC 4180 quoting (see csv_cell); the last
                        column, ``_found_by``, as ``column:kind`` pairs joined by ``;`` (see found_by_cell)
    manifest.json       schema_version (2), request_id, subject_id, identifiers, format, generated_at,
                        expires_at, tables (name, rows, file), files (name, size, sha256 of every file above),
                        notes

The zip is streamed to its destination; members are written one at a time and hashed as they go.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dsr.exports.store import FOUND_BY, dumps, table_folder

__all__ = ["MANIFEST_VERSION", "PackageZip", "csv_cell", "csv_name", "found_by_cell", "readme"]

MANIFEST_VERSION = 2
"""2: the manifest lists the person's identifiers (kind and value); 1 had none."""
JSON_NAME = "export.json"


def csv_name(table: str) -> str:
    return table_folder(table) + ".csv"


def csv_cell(value: Any) -> str:
    """A JSON value of an export row as CSV text: null -> empty, true/false, numbers as JSON writes them,
    text as is (decimals, timestamps and base64 binary are already text), lists and objects as JSON text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return dumps(value)
    if isinstance(value, float):
        return json.dumps(value)
    return str(value)


def found_by_cell(value: Any) -> str:
    """A row's ``_found_by`` (``[{"column": c, "kind": k}, ...]``) as CSV text: ``c:k`` pairs joined by ``;``, e.g.
    ``sender_id:user_id;recipient_id:user_id``. A kind name is letters, digits and ``_``, so the kind is what
    follows a pair's last ``:``; a column name holding ``;`` would make the cell ambiguous (the json format is
    exact). Anything else as :func:`csv_cell` writes it."""
    if isinstance(value, list) and all(isinstance(v, dict) and {"column", "kind"} <= set(v) for v in value):
        return ";".join(f"{v['column']}:{v['kind']}" for v in value)
    return csv_cell(value)


def readme(request_id: str, fmt: str, expires_at: str, tables: Sequence[str]) -> str:
    if fmt == "csv":
        files = "\n".join(f"  {csv_name(t)}  the rows of table {t}" for t in tables)
        how = ("Each .csv file has a header row and one row per record (UTF-8, comma-separated, quoted as in\n"
               "RFC 4180). An empty cell is an empty value (null); nested values are written as JSON text.\n"
               f"The last column, {FOUND_BY}, is not part of our data: it says where we found you in that\n"
               "record, as column:kind pairs separated by ';' (e.g. sender_id:user_id;recipient_id:user_id\n"
               "when you are both the sender and the recipient of a message).")
    else:
        files = f"  {JSON_NAME}  every table's rows, as one JSON document"
        how = ("The JSON document holds, under \"identifiers\", the identifiers we searched for (kind and\n"
               "value), and under \"tables\", the rows of every table (one object per row). The member\n"
               f"{FOUND_BY} of each row is not part of our data: it says where we found you in that record, as\n"
               "a list of {\"column\", \"kind\"}: the column that holds one of your identifiers, and its kind\n"
               "(two entries when, say, you are both the sender and the recipient of a message).")
    return (
        f"Your data export (request {request_id})\n\n"
        f"This package holds a copy of the personal data we keep about you, in a machine-readable format.\n\n"
        f"Files:\n{files}\n  manifest.json  the identifiers we searched for, the list of files with their size and\n"
        f"                 SHA-256 checksum, and row counts\n\n"
        f"{how}\nTimes are ISO-8601 (UTC when they end in Z), amounts are exact decimal text, binary values are\n"
        f"base64 text.\n\nThis package is deleted on {expires_at[:16].replace('T', ' ')} UTC: keep your own copy "
        f"if you need it.\n"
    )


class _Hashed:
    def __init__(self, out: Any) -> None:
        self._out = out
        self.size = 0
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.size += len(data)
        self.sha.update(data)
        return len(data)


class _Text:
    """What ``csv.writer`` writes to: text encoded as UTF-8 into a member."""

    def __init__(self, out: _Hashed) -> None:
        self._out = out

    def write(self, text: str) -> int:
        return self._out.write(text.encode("utf-8"))


def _info(name: str, compress: bool) -> zipfile.ZipInfo:
    """A member's entry, dated now as ``ZipFile.open(name)`` dates it; deflated, or stored."""
    info = zipfile.ZipInfo(name, date_time=time.localtime(time.time())[:6])
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    return info


class PackageZip:
    """A zip streamed to ``out`` (any binary stream; closed by :meth:`finish`)."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.files: list[dict[str, Any]] = []

    @contextmanager
    def member(self, name: str, *, compress: bool = True) -> Iterator[_Hashed]:
        """A member to stream into, hashed as it goes; ``compress=False`` stores it as is (a small text, where
        deflating costs more than it saves)."""
        with self._zip.open(_info(name, compress), "w", force_zip64=True) as f:
            hashed = _Hashed(f)
            yield hashed
        self.files.append({"name": name, "size": hashed.size, "sha256": hashed.sha.hexdigest()})

    def text(self, name: str, text: str) -> None:
        with self.member(name, compress=False) as m:
            m.write(text.encode("utf-8"))

    def csv_rows(self, name: str, columns: Sequence[str], rows: Iterator[bytes]) -> int:
        """One table's rows (JSON objects, one per item) as a CSV member; returns the row count."""
        n = 0
        with self.member(name) as m:
            w = csv.writer(_Text(m), lineterminator="\r\n")
            w.writerow(columns)
            for row in rows:
                values = json.loads(row)
                w.writerow([found_by_cell(values.get(c)) if c == FOUND_BY else csv_cell(values.get(c))
                            for c in columns])
                n += 1
        return n

    def discard(self) -> None:
        """After a failure (the destination already aborted): close the zip quietly, so it writes nothing later."""
        with contextlib.suppress(Exception):
            self._zip.close()

    def finish(self, head: Mapping[str, Any], tables: Mapping[str, Mapping[str, Any]],
               notes: Mapping[str, str]) -> None:
        """Write ``manifest.json`` (over every member so far) and close the zip and the stream."""
        manifest = {"schema_version": MANIFEST_VERSION, **head, "tables": [{"name": t, **d} for t, d in tables.items()],
                    "files": list(self.files), "notes": dict(notes)}
        with self._zip.open(_info("manifest.json", False), "w") as f:
            f.write(json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8") + b"\n")
        self._zip.close()
        self._out.close()
