"""Delta tables dsr did not write (Spark, Databricks, delta-rs), and a generic case for each: which column is
the subject, which value to erase, what an anonymise would mask. ``lakes.around`` copies one into a lake.

``tests/data/delta-tables`` holds the tables of ``../shared/delta-tables`` (see its SOURCES.md).
``$DSR_REAL_TABLES`` names another folder of Delta tables to run the same tests on (every table in it).
Rows are read back with ``lakes.rows`` (DataFusion SQL), not with the access layer's ``scan``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import lakes

VENDORED = Path(__file__).resolve().parent / "data" / "delta-tables"


def table_dirs() -> list[Path]:
    """Every Delta table to test: the vendored ones, or those under $DSR_REAL_TABLES."""
    root = Path(os.environ.get("DSR_REAL_TABLES") or VENDORED)
    return sorted(p for p in root.iterdir() if (p / "_delta_log").is_dir())


@dataclass(frozen=True)
class Case:
    """One table and what to erase in it."""

    source: Path
    name: str  # the table's name in the policy (an identifier)
    subject: str
    value: Any  # a subject value present in the table, as stored (None: the table has no row)
    castable: bool  # the subject column's type can hold a subject id (text or integer)
    anonymise_masks: dict[str, str]

    @property
    def subject_id(self) -> str:
        return "no-such-subject-0" if self.value is None else str(self.value)


def _castable(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)


def case_for(source: Path) -> Case | None:
    """The generic case of a table, or None when the access layer cannot read its metadata at all."""
    from collections import Counter as C

    import pyarrow as pa

    from dsr.core.masks import pseudonym_kind
    from dsr.delta import access
    from dsr.errors import TableError

    name = "t_" + "".join(c if c.isalnum() else "_" for c in source.name)[:60]
    try:
        info = access.table_info(str(source))
    except TableError:
        return None
    fields = [f for f in info.schema if not pa.types.is_null(f.type)]
    generated = {c for c, m in info.column_metadata.items() if "delta.generationExpression" in m}
    candidates = [f for f in fields if _castable(f.type) and f.name not in info.partition_columns]
    subject = (candidates or [f for f in fields if f.name not in info.partition_columns] or fields)[0]
    try:
        rows = lakes.rows(str(source))
    except Exception:
        rows = []
    values = C(r[subject.name] for r in rows if r.get(subject.name) is not None)
    value = values.most_common(1)[0][0] if values else None
    masks: dict[str, str] = {}
    if pseudonym_kind(subject.type) in ("string", "int64", "int32"):
        masks[subject.name] = "pseudonymise"
        for f in fields:
            if (f.name != subject.name and f.nullable and f.name not in info.partition_columns
                    and f.name not in generated and pseudonym_kind(f.type) == "string"):
                masks[f.name] = "nullify"
                break
        if len(masks) == 1:  # a generated column fed by the subject exercises the gate's generated-columns rule
            for f in fields:
                if f.name != subject.name and f.name in generated:
                    masks[f.name] = "nullify"
                    break
    elif subject.nullable:
        masks[subject.name] = "nullify"
    return Case(source, name, subject.name, value, _castable(subject.type), masks)


def masked_value(mask: str, case: Case, arrow_type: Any) -> Any:
    """The reference value of a mask for the case's subject (pseudonymise: the keyed pseudonym)."""
    from tests import expect

    if mask == "nullify":
        return None
    kind = expect.form(arrow_type)
    assert mask == "pseudonymise" and kind is not None
    return expect.pseudonym(lakes.KEY.encode(), case.subject_id, kind)
