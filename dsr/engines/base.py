"""The Engine Protocol: the only thing pipeline.py knows about the engines.

An engine does I/O on Delta tables; it decides nothing. Everything it is handed is already validated and
built (the MERGE source of subject keys and pseudonyms, the SQL of each mask in the engine's dialect).
Subject ids travel only as data (pyarrow columns, DataFrames), never as literals in SQL text or in commit
metadata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["KEY_COLUMN", "CommitResult", "Engine", "ErasePlan"]

KEY_COLUMN = "__dsr_key"
"""Name of the MERGE source column holding the subject ids cast to the subject column's type."""


@dataclass(frozen=True)
class ErasePlan:
    """What one erase commit does to one table.

    ``strategy`` is 'delete' or 'anonymise'; ``updates`` maps column -> SQL expression (in the engine's
    dialect) for anonymise; the target alias is ``t`` and the source alias ``s``. ``metadata`` goes into the
    Delta commit (run id, request ids; never subject ids).
    """

    uri: str
    subject: str
    strategy: str
    updates: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CommitResult:
    version_before: int
    version_after: int
    rows_deleted: int = 0
    rows_updated: int = 0
    rows_copied: int = 0
    files_added: int = 0
    files_removed: int = 0


@runtime_checkable
class Engine(Protocol):
    name: str
    dialect: str
    """'datafusion' (delta-rs) or 'spark': which SQL the mask expressions are written in."""
    frame_kind: str
    """'pandas' or 'spark': what ``validation_frames`` yields, for Great Expectations."""
    scans: Counter[str]
    """How many data scans each table uri has had (tests read it to prove one scan per batch)."""

    def schema(self, uri: str) -> Any:
        """The pyarrow schema of the table's current version."""
        ...

    def version(self, uri: str) -> int:
        ...

    def row_count(self, uri: str, version: int | None = None) -> int:
        """Rows in the table at version (current when None)."""
        ...

    def scan_subjects(
        self, uri: str, column: str, keys: Any, columns: Sequence[str] | None = None
    ) -> Iterator[Any]:
        """ONE scan of the table: pyarrow RecordBatches of rows whose ``column`` is in ``keys``
        (a pyarrow Array of the column's type), projected to ``columns`` (all when None)."""
        ...

    def erase(self, plan: ErasePlan, source: Any) -> CommitResult:
        """One Delta commit: MERGE ``source`` (a pyarrow Table with KEY_COLUMN and pseudonym columns) into
        the table ON t.<subject> = s.KEY_COLUMN, deleting or updating matched rows."""
        ...

    def history(self, uri: str, limit: int = 20) -> list[dict[str, Any]]:
        """Recent commit infos, newest first, each with 'version', 'operationMetrics' and custom metadata."""
        ...

    def validation_frames(
        self, uri: str, columns: Sequence[str], *, version: int | None = None,
        where_in: tuple[str, Any] | None = None, batch_rows: int = 1_000_000,
    ) -> Iterator[Any]:
        """Frames (pandas or Spark, per ``frame_kind``) of the projected columns for GE validation, in
        batches of at most batch_rows (Spark: one distributed frame); at least one frame, possibly empty,
        unless ``where_in`` has no keys. ``where_in`` = (column, pyarrow Array) keeps only rows whose column
        is in the array — as data (a join or a pyarrow filter), never as literals in SQL text or a plan."""
        ...

    def close(self) -> None:
        ...
