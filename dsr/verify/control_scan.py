"""What dsr's control table still holds of people, identifier kind by kind (counts, never values).

A request row names its person by ``subject_id`` (of kind ``id_kind``; NULL: the implicit kind) and, in
``identities``, by every identifier filed with it and resolved for it (``[kind, value]`` pairs). A person's raw
identifiers are (kind, value) pairs: a row holds one when its ``subject_id`` and ``id_kind`` are that pair, or its
``identities`` list it. Another person's customer number 77 is not a user id 77: rows are compared pair by pair.

Every parquet file of the table is read (referenced or not). The log (statistics, partition values) and file
names cannot say which kind a value is of: a raw value is counted there only when no row of the table holds it
under another kind (then it can only be the person's).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from dsr.core.identifiers import IMPLICIT, Identifier
from dsr.core.masks import SUBJECT_DIGEST_PREFIX
from dsr.core.requests import Request
from dsr.delta import physical, storage

__all__ = ["Pair", "findings", "identity_pairs", "raw_pairs"]

Pair = tuple[str, str]
"""(identifier kind, value)."""

_COLUMNS = ("request_id", "subject_id", "id_kind", "identities")


def raw_pairs(requests: Iterable[Request]) -> dict[Pair, set[str]]:
    """(kind, raw value) -> the requests holding it: each request's named identifier, those filed with it and
    those resolved for it (a minimised request holds none)."""
    out: dict[Pair, set[str]] = {}
    for r in requests:
        if r.minimised:
            continue
        for i in {Identifier(r.id_kind or IMPLICIT, r.subject_id), *r.given(), *(r.resolved or ())}:
            out.setdefault((i.kind, i.value), set()).add(r.request_id)
    return out


def identity_pairs(text: str | None) -> list[Pair]:
    """The (kind, value) pairs of an ``identities`` JSON text (given and resolved); none when unreadable."""
    if not text:
        return []
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    out = []
    for part in ("given", "resolved"):
        for item in (doc.get(part) or []) if isinstance(doc, dict) else []:
            if isinstance(item, list) and len(item) == 2:
                out.append((str(item[0]), str(item[1])))
    return out


def _raw(value: Any) -> bool:
    return value is not None and not str(value).startswith(SUBJECT_DIGEST_PREFIX)


def _candidates(data: Any, values: set[str], owned: Mapping[str, str]) -> list[dict[str, Any]]:
    """The rows that can matter, filtered in Arrow: a subject id among ``values``, an owned request, or identities
    holding one of ``values`` as text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    data = pa.table({c: data[c].cast(pa.string()) for c in data.column_names})  # MERGE writes string views
    texts = pa.array(sorted(values), pa.string())
    hit = pc.fill_null(pc.is_in(data["subject_id"], value_set=texts), False)
    hit = pc.or_(hit, pc.fill_null(pc.is_in(data["request_id"], value_set=pa.array(sorted(owned), pa.string())),
                                   False))
    if "identities" in data.column_names:
        identities = data["identities"]
        for v in values:
            hit = pc.or_(hit, pc.fill_null(pc.match_substring(identities, json.dumps(v, ensure_ascii=False)), False))
    return list(data.filter(hit).to_pylist())


def findings(uri: str, pairs: Mapping[Pair, set[str]], owned: Mapping[str, str] | None = None) -> Counter[str]:
    """request id -> findings of its person in the control table at ``uri``: rows holding one of its raw pairs
    (``pairs``: pair -> request ids), rows of the requests ``owned`` (row's request id -> the request it counts
    for) still holding an undigested identifier, and raw values in the log or names that no row holds under
    another kind."""
    import pyarrow.parquet as pq

    owned = dict(owned or {})
    values = {v for _, v in pairs}
    found: Counter[str] = Counter()
    others: set[str] = set()  # raw values rows hold under another kind (someone else's)
    for filesys, path, rel, _ in storage.walk(uri):
        if rel.startswith("_delta_log/") or not rel.endswith(".parquet"):
            continue
        with filesys.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            data = pf.read(columns=[c for c in _COLUMNS if c in pf.schema_arrow.names])
        for row in _candidates(data, values, owned):
            sid = str(row["subject_id"])
            pair = (row.get("id_kind") or IMPLICIT, sid)
            listed = identity_pairs(row.get("identities"))
            for rid in pairs.get(pair, ()):
                found[rid] += 1
            if pair not in pairs and sid in values:
                others.add(sid)
            for p in listed:
                for rid in pairs.get(p, ()):
                    found[rid] += 1
            mine = owned.get(str(row["request_id"]))
            if mine and pair not in pairs and (_raw(sid) or any(_raw(v) for _, v in listed)):
                found[mine] += 1
    for value, places in physical.find_keys(uri, {"subject_id"}, sorted(values - others),
                                            rows=lambda files: {}).items():  # the rows: read above, pair by pair
        n = sum(places.values())
        for rid in {r for (_, v), rs in pairs.items() if v == value for r in rs}:
            found[rid] += n
    return found
