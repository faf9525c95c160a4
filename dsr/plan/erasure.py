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
    """Subject ids of a batch matched to one table's subject column type."""

    keys: Any  # pyarrow Array of the column type, unique values
    by_request: Mapping[str, Any]  # request id -> key value (castable requests only)
    uncastable: tuple[str, ...]  # request ids whose subject id cannot be cast: they match nothing here
    subject_of_key: Mapping[Any, str]  # key value -> subject id (to compute pseudonyms)


def subject_keys(requests: Sequence[tuple[str, str]], column_type: Any) -> SubjectKeys:
    """``requests`` = (request id, subject id) pairs. Casts each id to the column type."""
    import pyarrow as pa

    by_request: dict[str, Any] = {}
    uncastable: list[str] = []
    subject_of_key: dict[Any, str] = {}
    for rid, sid in requests:
        value = cast_subject(sid, column_type)
        if value is None:
            uncastable.append(rid)
            continue
        by_request[rid] = value
        subject_of_key.setdefault(value, sid)
    values = list(subject_of_key)
    return SubjectKeys(
        keys=pa.array(values, type=column_type),
        by_request=by_request,
        uncastable=tuple(uncastable),
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

    personal = {table.subject, *table.mask_map}
    out = []
    for c in partition_columns:
        t = schema.field(c).type
        if c not in personal and (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
                                  or pa.types.is_date32(t)):
            out.append(c)
    return out
