"""Residue: what of an erased person is still on disk, per request, table and place (counts, never values).

For each covered table, every file under its directory is searched, in each subject column, for the request's
identifiers of the column's kind (:mod:`dsr.delta.physical`): data and change-data files, referenced or not, rows
a deletion vector masks, log statistics and partition values in commits, checkpoints and sidecars, directory
names. A kind that normalises is compared in canonical form: every value found is normalised (the kind's steps,
the one implementation) before it is compared with the person's canonical values, so a raw variant such as
``' Jane@Example.org'`` left in an old file is found; a value of another kind never is. Retained tables are
reported as retained. dsr's own places are searched for every raw identifier value of the request: the control
table (its subject column, statistics included, and its identities), the audit table (every text value, JSON
details included) and the exports (the person's documents, part files, file names).

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
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core.identifiers import IMPLICIT
from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec
from dsr.core.requests import Request, list_requests
from dsr.delta import access, physical, storage
from dsr.engines.reading import LOCAL, Reader, folder
from dsr.plan.people import column_keys
from dsr.verify import control_scan

__all__ = ["RETAINED", "Residue", "Terms", "every_term", "scan", "search_terms", "table_counts"]

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


@dataclass(frozen=True)
class Terms:
    """What to look for in one subject column: its names on disk (logical and physical), the people's keys of
    its kind (``keys.keys`` to search, ``keys.by_request``), and the kind's normalisation ``steps`` (none: the
    keys are the values cast to the column's type; some: the keys are canonical forms, and every value found is
    compared in its canonical form)."""

    view: TableSpec
    names: frozenset[str]
    keys: Any  # dsr.plan.erasure.SubjectKeys
    steps: tuple[str, ...] = ()

    @property
    def fold(self) -> physical.Fold | None:
        return folder(self.steps)

    @property
    def wanted(self) -> list[Any]:
        return [k for k in self.keys.keys.to_pylist() if k is not None]

    @property
    def sought(self) -> physical.Sought:
        """The column as :mod:`dsr.delta.maintenance` looks for it in files no version references."""
        return physical.Sought(self.names, tuple(self.wanted), self.fold)


def search_terms(policy: Policy, view: TableSpec, requests: Sequence[Request]) -> Terms:
    """One subject column's terms (``view``: one subject column of a table, :meth:`TableSpec.views`): the
    requests' identifiers of its kind, each cast to the column's type, or for a kind that normalises, their
    canonical text (:func:`dsr.plan.people.column_keys`)."""
    import pyarrow as pa

    info = access.table_info(view.uri)
    kind = policy.kinds[view.kind]
    ctype = pa.string() if kind.normalise else info.schema.field(view.subject).type
    keys = column_keys(kind, [(r.request_id, r.ids) for r in requests], ctype)
    return Terms(view, frozenset({view.subject, info.physical_name(view.subject)}), keys, tuple(kind.normalise))


def every_term(policy: Policy, table: TableSpec, requests: Sequence[Request]) -> list[Terms]:
    """The terms of every subject column of a table (one per view)."""
    return [search_terms(policy, view, requests) for view in table.views()]


def table_counts(policy: Policy, table: TableSpec, requests: Sequence[Request],
                 reader: Reader = LOCAL) -> dict[str, dict[str, int]]:
    """request id -> place -> how often its person's keys are on disk in one (delete/anonymise) table, over its
    subject columns, each with its kind's keys; the rows of its data and change-data files read by ``reader``."""
    out: dict[str, dict[str, int]] = {r.request_id: dict.fromkeys(physical.PLACES, 0) for r in requests}
    for terms in every_term(policy, table, requests):
        found = physical.find_keys(table.uri, terms.names, terms.wanted, rows=_rows_of(reader, table.uri, terms),
                                   fold=terms.fold)
        for r in requests:
            for key in terms.keys.by_request.get(r.request_id, ()):
                for p, n in found.get(key, Counter()).items():
                    out[r.request_id][p] = out[r.request_id].get(p, 0) + int(n)
    return out


def _rows_of(reader: Reader, uri: str, terms: Terms) -> physical.RowSearch:
    """The reader's row search of one subject column's keys, for :func:`dsr.delta.physical.find_keys`."""
    return lambda files: reader.key_rows(uri, files, terms.names, terms.keys.keys, steps=terms.steps)


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


def _text_residue(uri: str, ids: Mapping[str, re.Pattern[str]], columns: Sequence[str] | None = None) -> Counter[str]:
    """Text values of every parquet file of one of dsr's tables (referenced or not; only its ``columns`` when
    given) that hold an identifier value: value -> how many."""
    import pyarrow.parquet as pq

    found: Counter[str] = Counter()
    for filesys, path, rel, _ in storage.walk(uri):
        if not rel.endswith(".parquet") or rel.startswith("_delta_log/"):
            continue
        with filesys.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            wanted = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
            if wanted == []:
                continue
            for row in pf.read(columns=wanted).to_pylist():
                texts = [s for v in row.values() for s in _strings(v)]
                for value, pattern in ids.items():
                    found[value] += sum(1 for t in texts if pattern.search(t))
    return found


def _export_residue(policy: Policy, ids: Mapping[str, re.Pattern[str]], foreign: Collection[str] = ()
                    ) -> Counter[str]:
    """Export packages and documents of the person, part-file lines naming them, and file names holding an
    identifier value: value -> how many. A package or document of a ``foreign`` request (one that names the value
    under another identifier kind: someone else's) is not the person's."""
    found: Counter[str] = Counter()
    for filesys, path, rel, _ in storage.walk(policy.exports):
        for value, pattern in ids.items():
            found[value] += bool(pattern.search(rel))
        if path.endswith(".zip"):  # a package: its manifest names the person (a sealed one cannot be read)
            rid, named = _package_people(filesys, path)
            for value in ids:
                found[value] += value in named and rid not in foreign
        elif path.endswith((".json", ".jsonl")):
            with filesys.open_input_stream(path) as f:
                text = f.read().decode("utf-8", errors="replace")
            rid, named = _document_people(text) if path.endswith(".json") else (None, set())
            for value in ids:
                if path.endswith(".json"):
                    found[value] += value in named and rid not in foreign
                else:
                    found[value] += sum(1 for line in text.splitlines() if json.dumps(value) in line)
    return found


def _package_people(filesys: Any, path: str) -> tuple[str | None, set[str]]:
    import zipfile

    try:
        with filesys.open_input_file(path) as f, zipfile.ZipFile(f) as z:  # seekable: reads the manifest only
            return _document_people(z.read("manifest.json").decode("utf-8", errors="replace"))
    except (OSError, KeyError, zipfile.BadZipFile):
        return None, set()


def _document_people(text: str) -> tuple[str | None, set[str]]:
    """The request a document or manifest is of, and the identifier values it names its person by: its
    ``subject_id``, and every value under ``identifiers`` (or ``identities``), whatever their shape."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None, set()
    if not isinstance(doc, dict):
        return None, set()
    out = {str(doc["subject_id"])} if doc.get("subject_id") is not None else set()
    for key in ("identifiers", "identities"):
        out |= set(_strings(doc.get(key)))
    return (str(doc["request_id"]) if doc.get("request_id") else None), out


def _foreign(policy: Policy, pairs: Mapping[control_scan.Pair, set[str]]) -> set[str]:
    """The requests that name one of the people's values under another identifier kind (someone else's)."""
    if not storage.delta_table_exists(policy.requests_uri):
        return set()
    values = {v for _, v in pairs}
    return {r.request_id for r in list_requests(policy, subjects=values)
            if (r.id_kind or IMPLICIT, r.subject_id) not in pairs}


def scan(policy: Policy, requests: Iterable[Request], *, tables: bool = True, control_table: bool = True,
         reader: Reader = LOCAL) -> list[Residue]:
    """The residue of each erasure request, in the order given: in every covered table (unless ``tables`` is
    false; their data files read by ``reader``) and dsr's own places, read here (the control table unless
    ``control_table`` is false: a purge checks it after the ids there are digested). dsr's own places are
    searched for every identifier the request holds (the one it names, those filed, those resolved): the
    control table pair by pair (kind and value, :mod:`dsr.verify.control_scan`), the audit table and the exports
    (which hold text) for each value as text."""
    todo = list(requests)
    out = {r.request_id: Residue(r.request_id) for r in todo}
    if not todo:
        return []
    if tables:
        _table_residue(policy, todo, out, reader)
    values = sorted({v for r in todo for v in r.values})
    ids = {v: _token(v) for v in values}
    pairs = control_scan.raw_pairs(todo)
    known = control_table and storage.delta_table_exists(policy.requests_uri)
    control = control_scan.findings(policy.requests_uri, pairs) if known else Counter()
    in_audit = _text_residue(policy.audit_uri, ids)
    in_exports = _export_residue(policy, ids, _foreign(policy, pairs))
    for r in todo:
        mine = set(r.values)
        out[r.request_id].own = {
            **({"control table": int(control[r.request_id])} if control_table else {}),
            "audit table": int(sum(in_audit[v] for v in mine)),
            "exports": int(sum(in_exports[v] for v in mine)),
        }
    return [out[r.request_id] for r in todo]
