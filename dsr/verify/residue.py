"""Residue: what of an erased person is still on disk, per request, table and place (counts, never values).

For each covered table, every file under its directory is searched for the request's key in the subject column
(:mod:`dsr.delta.physical`): data and change-data files, referenced or not, rows a deletion vector masks, log
statistics and partition values in commits, checkpoints and sidecars, directory names. Retained tables are
reported as retained. dsr's own places are searched for the raw subject id: the control table (its subject
column, statistics included), the audit table (every text value, JSON details included) and the exports
(the person's documents, part files, file names).

An erasure leaves residue until a purge: the removed files stay for time travel, old log entries keep their
statistics, the control table keeps the id. This scan says where, so a purge can be proven.

The tables' data and change-data files are read by the given reader (:meth:`dsr.engines.reading.Reader.key_rows`):
in this process by default, on the cluster with the Spark engine's, handed the files listed here. The logs, the
names, and dsr's own places (small tables of its own, the exports) are read here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec
from dsr.core.requests import Request
from dsr.delta import access, physical, storage
from dsr.engines.reading import LOCAL, Reader
from dsr.plan.people import column_keys

__all__ = ["RETAINED", "Residue", "scan", "search_terms", "table_counts"]

RETAINED = "retained"
OWN_PLACES = ("control table", "audit table", "exports")


@dataclass
class Residue:
    """One erasure's residue: table -> place -> count (or ``RETAINED``), and dsr's own places -> count."""

    request_id: str
    tables: dict[str, dict[str, int] | str] = field(default_factory=dict)
    own: dict[str, int] = field(default_factory=dict)

    def total(self) -> int:
        in_tables = sum(sum(t.values()) for t in self.tables.values() if isinstance(t, dict))
        return in_tables + sum(self.own.values())

    def as_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "tables": self.tables, "own": self.own, "total": self.total()}


def search_terms(policy: Policy, view: TableSpec, requests: Sequence[Request]) -> tuple[set[str], Any]:
    """One subject column's names on disk (logical and physical) and the requests' keys of its kind, each cast
    to the column's type (:func:`dsr.plan.people.column_keys`: ``.keys`` to search, ``.by_request``).
    ``view``: one subject column of a table (:meth:`TableSpec.views`)."""
    info = access.table_info(view.uri)
    keys = column_keys(policy.kinds[view.kind], [(r.request_id, r.ids) for r in requests],
                       info.schema.field(view.subject).type)
    return {view.subject, info.physical_name(view.subject)}, keys


def table_counts(policy: Policy, table: TableSpec, requests: Sequence[Request],
                 reader: Reader = LOCAL) -> dict[str, dict[str, int]]:
    """request id -> place -> how often its person's keys are on disk in one (delete/anonymise) table, over its
    subject columns; the rows of its data and change-data files read by ``reader``."""
    out: dict[str, dict[str, int]] = {r.request_id: dict.fromkeys(physical.PLACES, 0) for r in requests}
    for view in table.views():
        names, keys = search_terms(policy, view, requests)
        found = physical.find_keys(view.uri, names, keys.keys.to_pylist(), rows=_rows_of(reader, view.uri, names,
                                                                                       keys.keys))
        for r in requests:
            for key in keys.by_request.get(r.request_id, ()):
                for p, n in found.get(key, Counter()).items():
                    out[r.request_id][p] = out[r.request_id].get(p, 0) + int(n)
    return out


def _rows_of(reader: Reader, uri: str, names: set[str], keys: Any) -> Any:
    """The reader's row search of one subject column's keys, for :func:`dsr.delta.physical.find_keys`."""
    return lambda files: reader.key_rows(uri, files, names, keys)


def _table_residue(policy: Policy, requests: Sequence[Request], out: Mapping[str, Residue], reader: Reader) -> None:
    for table in policy.tables:
        if table.erase == Strategy.RETAIN:
            for r in requests:
                out[r.request_id].tables[table.name] = RETAINED
            continue
        for rid, counts in table_counts(policy, table, requests, reader).items():
            out[rid].tables[table.name] = counts


def _token(subject_id: str) -> re.Pattern[str]:
    """How an id is found in a text: as a whole token; an id of digits only, as the whole text (a number as a
    token is in every version span and count: ``0..4``, ``7 row(s)``)."""
    if subject_id.strip().isdigit():
        return re.compile(rf"^\s*{re.escape(subject_id.strip())}\s*$")
    return re.compile(rf"(?<![0-9A-Za-z]){re.escape(subject_id)}(?![0-9A-Za-z])")


_SPANS = frozenset({"unreadable_versions"})  # details dsr writes as text that are version numbers, never ids


def _strings(value: Any) -> Iterator[str]:
    """Every text in a cell; a cell holding JSON (the audit details) is searched value by value, so numbers in
    it (row counts, versions, version spans) are never taken for an id."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "{[":
            try:
                yield from _strings(json.loads(text))
                return
            except ValueError:
                pass
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            if k not in _SPANS:
                yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _audit_residue(policy: Policy, ids: Mapping[str, re.Pattern[str]]) -> Counter[str]:
    """Text values of every parquet file of the audit table (referenced or not) that hold a subject id."""
    import pyarrow.parquet as pq

    found: Counter[str] = Counter()
    for filesys, path, rel, _ in storage.walk(policy.audit_uri):
        if not rel.endswith(".parquet") or rel.startswith("_delta_log/"):
            continue
        with filesys.open_input_file(path) as f:
            for row in pq.read_table(f).to_pylist():
                texts = [s for v in row.values() for s in _strings(v)]
                for sid, pattern in ids.items():
                    found[sid] += sum(1 for t in texts if pattern.search(t))
    return found


def _export_residue(policy: Policy, ids: Mapping[str, re.Pattern[str]]) -> Counter[str]:
    """Export packages and documents of the subject, part-file lines naming it, and file names holding it."""
    found: Counter[str] = Counter()
    for filesys, path, rel, _ in storage.walk(policy.exports):
        for sid, pattern in ids.items():
            found[sid] += bool(pattern.search(rel))
        if path.endswith(".zip"):  # a package: its manifest names the subject (a sealed one cannot be read)
            subject = _package_subject(filesys, path)
            for sid in ids:
                found[sid] += subject == sid
        elif path.endswith((".json", ".jsonl")):
            with filesys.open_input_stream(path) as f:
                text = f.read().decode("utf-8", errors="replace")
            subject = _document_subject(text) if path.endswith(".json") else None
            for sid in ids:
                if path.endswith(".json"):
                    found[sid] += subject == sid
                else:
                    found[sid] += sum(1 for line in text.splitlines() if json.dumps(sid) in line)
    return found


def _package_subject(filesys: Any, path: str) -> str | None:
    import zipfile

    try:
        with filesys.open_input_file(path) as f, zipfile.ZipFile(f) as z:  # seekable: reads the manifest only
            return _document_subject(z.read("manifest.json").decode("utf-8", errors="replace"))
    except (OSError, KeyError, zipfile.BadZipFile):
        return None


def _document_subject(text: str) -> str | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return str(doc.get("subject_id")) if isinstance(doc, dict) and doc.get("subject_id") is not None else None


def scan(policy: Policy, requests: Iterable[Request], *, tables: bool = True, control_table: bool = True,
         reader: Reader = LOCAL) -> list[Residue]:
    """The residue of each erasure request, in the order given: in every covered table (unless ``tables`` is
    false; their data files read by ``reader``) and dsr's own places, read here (the control table unless
    ``control_table`` is false: a purge checks it after the ids there are digested)."""
    todo = list(requests)
    out = {r.request_id: Residue(r.request_id) for r in todo}
    if not todo:
        return []
    if tables:
        _table_residue(policy, todo, out, reader)
    ids = {r.subject_id: _token(r.subject_id) for r in todo}
    control = physical.find_keys(policy.requests_uri, {"subject_id"}, list(ids)) \
        if control_table and storage.delta_table_exists(policy.requests_uri) else {}
    in_audit = _audit_residue(policy, ids)
    in_exports = _export_residue(policy, ids)
    for r in todo:
        out[r.request_id].own = {
            **({"control table": int(sum(control.get(r.subject_id, Counter()).values()))} if control_table else {}),
            "audit table": int(in_audit[r.subject_id]),
            "exports": int(in_exports[r.subject_id]),
        }
    return [out[r.request_id] for r in todo]
