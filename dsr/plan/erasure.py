"""Pure planning of one table's erase commit: the MERGE source and the mask expressions.

No I/O here. The source holds the subject ids cast to the subject column's type (``__dsr_key``) and, for
anonymise, the pseudonyms of those subjects in each form the table's pseudonymised columns need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsr.core.masks import Strategy, mask_sql, pseudonym, pseudonym_column, pseudonym_kind
from dsr.core.policy import TableSpec
from dsr.core.subjects import cast_subject
from dsr.engines.base import KEY_COLUMN

__all__ = ["SubjectKeys", "build_source", "build_updates", "prunable_partitions", "pseudonyms", "subject_keys"]


@dataclass(frozen=True)
class SubjectKeys:
    """The identifiers of a batch matched to one subject column's type: the values to look for in the column."""

    keys: Any  # pyarrow Array of the column type, unique values
    by_request: Mapping[str, tuple[Any, ...]]  # request id -> its key values (castable identifiers only)
    uncastable: tuple[str, ...]  # request ids none of whose identifiers can be cast: they match nothing here
    subject_of_key: Mapping[Any, str]  # key value -> what its pseudonym is computed from

    def rows_of(self, rid: str, per_key: Mapping[Any, int]) -> int:
        """A request's rows, given the rows per key value."""
        return sum(per_key.get(v, 0) for v in self.by_request.get(rid, ()))

    def values_of(self, rids: Sequence[str]) -> set[Any]:
        return {v for rid in rids for v in self.by_request.get(rid, ())}


def subject_keys(requests: Sequence[tuple[str, str] | tuple[str, str, str]], column_type: Any) -> SubjectKeys:
    """``requests`` = (request id, id[, pseudonym input]) triples (a request may come more than once, one per
    identifier). Casts each id to the column type; the pseudonym input defaults to the id."""
    import pyarrow as pa

    by_request: dict[str, list[Any]] = {}
    seen: list[str] = []
    subject_of_key: dict[Any, str] = {}
    for item in requests:
        rid, sid = item[0], item[1]
        seen.append(rid)
        value = cast_subject(sid, column_type)
        if value is None:
            continue
        mine = by_request.setdefault(rid, [])
        if value not in mine:
            mine.append(value)
        subject_of_key.setdefault(value, item[2] if len(item) > 2 else sid)
    values = list(subject_of_key)
    return SubjectKeys(
        keys=pa.array(values, type=column_type),
        by_request={rid: tuple(v) for rid, v in by_request.items()},
        uncastable=tuple(dict.fromkeys(r for r in seen if r not in by_request)),
        subject_of_key=subject_of_key,
    )


def only(keys: SubjectKeys, request_ids: Sequence[str]) -> SubjectKeys:
    """The keys of some of the requests only."""
    import pyarrow as pa

    wanted = set(request_ids)
    by_request = {rid: v for rid, v in keys.by_request.items() if rid in wanted}
    values = {v for vs in by_request.values() for v in vs}
    subject_of_key = {k: s for k, s in keys.subject_of_key.items() if k in values}
    return SubjectKeys(keys=pa.array(list(subject_of_key), type=keys.keys.type), by_request=by_request,
                       uncastable=tuple(r for r in keys.uncastable if r in wanted), subject_of_key=subject_of_key)


def merged(a: SubjectKeys, b: SubjectKeys) -> SubjectKeys:
    """The keys of both (the same column): values, requests' keys and pseudonym inputs united."""
    import pyarrow as pa

    subject_of_key = {**b.subject_of_key, **a.subject_of_key}
    by_request = {rid: tuple(dict.fromkeys([*a.by_request.get(rid, ()), *b.by_request.get(rid, ())]))
                  for rid in {*a.by_request, *b.by_request}}
    return SubjectKeys(
        keys=pa.array(list(subject_of_key), type=a.keys.type), by_request=by_request,
        uncastable=tuple(r for r in dict.fromkeys([*a.uncastable, *b.uncastable]) if r not in by_request),
        subject_of_key=subject_of_key,
    )


def pseudonyms(keys: SubjectKeys, key: bytes, kind: str) -> list[str | int]:
    """The pseudonym of each key's subject, in ``keys.keys`` order, in the form for ``kind``."""
    return [pseudonym(key, keys.subject_of_key[v], kind) for v in keys.keys.to_pylist()]


def _needed_kinds(table: TableSpec, schema: Any) -> list[str]:
    kinds = set()
    for col, mask in table.masks:
        if mask.strategy == "pseudonymise":
            kind = pseudonym_kind(schema.field(col).type)
            if kind:
                kinds.add(kind)
    return sorted(kinds)


def build_source(table: TableSpec, schema: Any, keys: SubjectKeys, key: bytes | None) -> Any:
    """The MERGE source: KEY_COLUMN plus one pseudonym column per pseudonym kind the masks need."""
    import pyarrow as pa

    cols: dict[str, Any] = {KEY_COLUMN: keys.keys}
    if table.erase is Strategy.ANONYMISE:
        for kind in _needed_kinds(table, schema):
            if key is None:
                raise ValueError("pseudonymise needs the pseudonym key")
            arrow_type = {"string": pa.string(), "int64": pa.int64(), "int32": pa.int32()}[kind]
            cols[pseudonym_column(kind)] = pa.array(pseudonyms(keys, key, kind), type=arrow_type)
    return pa.table(cols)


def build_updates(table: TableSpec, schema: Any, dialect: str) -> dict[str, str]:
    """column -> SQL expression of its mask, in the engine's dialect."""
    return {col: mask_sql(mask, col, schema.field(col), dialect) for col, mask in table.masks}


def prunable_partitions(table: TableSpec, schema: Any, partition_columns: Sequence[str]) -> list[str]:
    """Partition columns an erase commit may name to prune its MERGE: not personal (not the subject column,
    not masked: their values go into the commit's predicate) and of a type with a plain literal."""
    import pyarrow as pa

    personal = {*table.subject_names, *(c for c, _ in table.every_mask)}
    out = []
    for c in partition_columns:
        t = schema.field(c).type
        if c not in personal and (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
                                  or pa.types.is_date32(t)):
            out.append(c)
    return out
