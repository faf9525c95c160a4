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
read. :func:`finish_documents` then writes one package per request, ``<exports>/<request_id>.zip`` (see
:mod:`dsr.exports.package`; ``.zip.sealed`` when encrypted to a recipient key, :mod:`dsr.exports.sealing`), in
one streaming pass: a cursor per table walks its sorted part while the requests are taken in request-id order.
Each package is for one :class:`Person` (request id, subject id as filed, identifiers). A json package holds the
document (schema_version 2)::

    {"schema_version": 2, "request_id": ..., "subject_id": ..., "identifiers": [{"kind": ..., "value": ...}],
     "exported_at": ..., "tables": {"<name>": [row, ...], ...}, "notes": {...}}

Each row carries ``_found_by`` (:data:`FOUND_BY`): the subject columns, with their kinds, that hold one of the
person's identifiers in that row. Version 1 had neither ``identifiers`` nor ``_found_by``; nothing else changed,
so a reader of version 1 keeps working by ignoring members it does not know.
Values: timestamps and dates ISO-8601, decimals as strings, binary as base64.

Bounds: a writer holds no file open between calls; spilling holds 1 file open, a merge ``fan_in + 1``
(16 + 1 by default). Finishing holds one file per table plus the document being written. Memory: the row
buffer (``buffer_bytes``, 8 MiB by default) plus a 1 MiB read buffer per file being merged, and a row count per
request (per table) — never all the exported rows.

Files and folders: local packages are written to ``<request_id>.zip.<run_id>.tmp`` in the same folder and
renamed; on S3 (boto3, with the policy's server-side encryption) an object appears only when its upload
completes (one that failed half way is aborted). Every
local file dsr writes here is mode 0600 and every folder it creates 0700, whatever the umask. Paths are built
from request ids, run ids, table names and counters only — never subject ids.
"""


from dsr.exports.documents import PackageOptions, Person, Stored, finish_documents
from dsr.exports.location import check_location, remove_run_parts, remove_stale_parts
from dsr.exports.parts import BUFFER_BYTES, FAN_IN, PartWriter
from dsr.exports.store import FOUND_BY, SCHEMA_VERSION, document_uri, json_columns, json_value

__all__ = [
    "BUFFER_BYTES",
    "FAN_IN",
    "FOUND_BY",
    "SCHEMA_VERSION",
    "PackageOptions",
    "PartWriter",
    "Person",
    "Stored",
    "check_location",
    "document_uri",
    "finish_documents",
    "json_columns",
    "json_value",
    "remove_run_parts",
    "remove_stale_parts",
]
