"""The YAML policy -> frozen, validated objects.

``load_policy`` checks the file on its own (keys, duplicate keys, strategies, masks, reasons, names, that
every path stays under the lake, number ranges); it does not read the pseudonym key, so filing requests and
reading the control table and audit log need no secret. ``Policy.pseudonym_key()`` reads the key from the
environment when it is needed; ``check_against_lake`` (what commands that process data call) checks the key
when a mask pseudonymises, then reads only Delta metadata (schemas) to check paths and columns. All raise
``PolicyError`` with one line naming the file, table, column or key at fault (never the key's value).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dsr.core.identifiers import IdKind
from dsr.core.masks import check_mask_type
from dsr.core.policy_model import ERASE_STRATEGIES, MASK_STRATEGIES, Exempt, Policy, TableSpec
from dsr.core.policy_parse import parse
from dsr.core.policy_yaml import load_yaml
from dsr.delta import storage
from dsr.errors import PolicyError

__all__ = [
    "ERASE_STRATEGIES",
    "MASK_STRATEGIES",
    "Exempt",
    "Policy",
    "TableSpec",
    "check_against_lake",
    "load_policy",
    "read_schema",
    "resolve_policy_path",
]


def resolve_policy_path(explicit: str | None) -> str:
    """``--policy FILE``, else ``$DSR_POLICY``, else ``./dsr.yml``."""
    return explicit or os.environ.get("DSR_POLICY") or "dsr.yml"


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate the policy file on its own (no lake access)."""
    p = Path(path)
    return parse(load_yaml(p), p)


# --- against the lake: Delta metadata only -------------------------------------------------------------


def check_against_lake(policy: Policy, *, key: bool = True) -> dict[str, Any]:
    """Check every table path is a Delta table with the named columns and mask-compatible types.

    Commands that process data call it before anything else: when a mask pseudonymises, the key must be set
    (``Policy.pseudonym_key()``; a PolicyError names the variable) unless ``key=False`` (maintenance, which
    computes no pseudonym). Then reads only the Delta log (schemas). Returns ``{table name: pyarrow schema}``.
    """
    if policy.unresolved:  # a table: entry no Spark session has resolved: there is nothing to read yet
        from dsr.core.policy_catalog import refuse_unresolved

        refuse_unresolved(policy, "this command")
    if key and policy.needs_key:
        policy.pseudonym_key()
    schemas: dict[str, Any] = {}
    for t in policy.tables:
        label = f"policy {policy.source}: table {t.name!r}"
        schema = _delta_schema(t.uri, label, f"path {t.path!r} is not a Delta table")
        names = schema.names
        for sc in t.subject_columns:
            _check_kind_column(policy, schema, sc.column, sc.kind, f"{label}, subject column {sc.column!r}",
                               f"{label}: subject column {sc.column!r}")
        for col, mask in t.every_mask:
            if col not in names:
                raise PolicyError(f"{label}: mask on column {col!r}, which the table does not have "
                                  f"(columns: {', '.join(names)})")
            problem = check_mask_type(mask, schema.field(col))
            if problem:
                raise PolicyError(f"{label}, column {col!r}: {problem}")
        for col in t.never_export:
            if col not in names:
                raise PolicyError(f"{label}: never_export column {col!r} not found (columns: {', '.join(names)})")
        schemas[t.name] = schema
    _check_links(policy)
    return schemas


def _check_links(policy: Policy) -> None:
    """Every link table of ``identity`` is a Delta table with the named columns, of types that fit their kinds."""
    for link in policy.identity:
        label = f"policy {policy.source}: identity table {link.path!r}"
        schema = _delta_schema(link.uri, label, "not a Delta table")
        for col, kind in link.columns:
            _check_kind_column(policy, schema, col, kind, f"{label}, column {col!r}", f"{label}: column {col!r}")


def _delta_schema(uri: str, label: str, missing: str) -> Any:
    """The table's schema; PolicyError (``label: missing``) when no Delta table is there."""
    try:
        schema = read_schema(uri)
    except PolicyError as exc:
        raise PolicyError(f"{label}: {exc}") from None
    if schema is None:
        raise PolicyError(f"{label}: {missing}")
    return schema


def _check_kind_column(policy: Policy, schema: Any, column: str, kind: str, where: str, absent: str) -> None:
    """PolicyError when ``column`` is not in ``schema`` (``absent: not found``) or does not fit ``kind``."""
    if column not in schema.names:
        raise PolicyError(f"{absent} not found (columns: {', '.join(schema.names)})")
    problem = kind_fits(policy.kinds[kind], schema.field(column).type)
    if problem:
        raise PolicyError(f"{where}: {problem}")


def kind_fits(kind: IdKind, arrow_type: Any) -> str | None:
    """Why a column of ``arrow_type`` cannot hold identifiers of ``kind`` (None: it can). The implicit kind is
    cast to any column, as ever."""
    import pyarrow as pa

    if kind.implicit:
        return None
    text = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or \
        pa.types.is_string_view(arrow_type)
    fits = {"string": text, "integer": pa.types.is_integer(arrow_type),
            "binary": pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)}[kind.type]
    if fits:
        return None
    return f"holds {arrow_type}, but its identifier kind {kind.name!r} is of type {kind.type}"


def read_schema(uri: str) -> Any:
    """The logical pyarrow schema of the Delta table at uri (from its log, via the access layer), or None when
    there is no Delta table there. Column-mapped tables give their logical names."""
    from dsr.delta import access
    from dsr.delta.features import unreadable_features
    from dsr.errors import TableError

    if not storage.delta_table_exists(uri):
        return None
    try:
        info = access.table_info(uri)
    except TableError as exc:
        raise PolicyError(f"{exc}") from None
    if not info.opened and not unreadable_features(info):
        # read from the log alone, and no unsupported feature explains why delta-rs could not open it: corrupt
        raise PolicyError(str(info.open_error))
    return info.schema
