"""The protocol gate applied to the policy's tables: can the reader and this engine process each one?

``dsr check`` lists every refusal; ``dsr run`` (and the DAG) refuses a table before any write, failing its
requests with :func:`TableVerdict.reason`, which names the table, the engine and every feature — never a
subject id. The rules themselves are in :mod:`dsr.delta.features`; this module only reads each table's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core.masks import Strategy
from dsr.core.policy import Policy, TableSpec
from dsr.delta import access
from dsr.delta.features import Refusal, gate, refusal_text
from dsr.delta.support import READ, Support
from dsr.engines.reading import Reader
from dsr.errors import TableError

__all__ = ["TableVerdict", "check_table", "check_tables", "normalisation_refusal"]


@dataclass(frozen=True)
class TableVerdict:
    table: str
    path: str
    strategy: str
    engine: str
    operations: tuple[str, ...]
    refusals: tuple[Refusal, ...] = ()
    error: str | None = None  # the table's metadata could not be read at all
    info: access.TableInfo | None = field(default=None, compare=False, repr=False)
    """The metadata the verdict was made on (callers reuse it instead of reading the log again)."""

    @property
    def ok(self) -> bool:
        return not self.refusals and self.error is None

    @property
    def reason(self) -> str:
        if self.error is not None:
            return f"table {self.table!r} refused on engine {self.engine}: {self.error}"
        return refusal_text(self.table, self.engine, self.refusals)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "path": self.path, "strategy": self.strategy, "engine": self.engine,
                "operations": list(self.operations), "ok": self.ok, "error": self.error,
                "features": [r.as_dict() for r in self.refusals]}


def check_table(table: TableSpec, support: Support, operations: Sequence[str] | None = None) -> TableVerdict:
    """The gate for one policy table on one engine (``operations``: default, what its strategy needs)."""
    ops = tuple(operations) if operations is not None else table.erase.operations
    masked = [c for c, _ in table.masks] if table.erase is Strategy.ANONYMISE else []
    verdict = TableVerdict(table.name, table.path, table.erase, support.name, ops)
    try:
        info = access.table_info(table.uri)
    except TableError as exc:
        return TableVerdict(**{**verdict.__dict__, "error": str(exc)})
    refusals = tuple(gate(info, support, ops, masked_columns=masked))
    if not info.opened and not any(r.operation == READ for r in refusals):
        return TableVerdict(**{**verdict.__dict__, "refusals": refusals, "error": info.open_error, "info": info})
    return TableVerdict(**{**verdict.__dict__, "refusals": refusals, "info": info})


def normalisation_refusal(policy: Policy, table: TableSpec, reader: Reader, engine: str) -> str | None:
    """Why ``reader`` cannot match one of the table's subject columns: its kind normalises, and the reader's
    normalisation differs from this process's on the probe strings (None: it reproduces every one)."""
    for sc in table.subject_columns:
        kind = policy.kinds[sc.kind]
        why = reader.reproduces(kind.normalise) if kind.normalise else None
        if why:
            return f"table {table.name!r} refused on engine {engine}: subject column {sc.column!r}, identifier " \
                   f"kind {kind.name!r}: {why}"
    return None


def check_tables(policy: Policy, support: Support) -> list[TableVerdict]:
    """The gate for every table of the policy."""
    return [check_table(t, support) for t in policy.tables]
