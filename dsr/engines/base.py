"""The Engine Protocol: the only thing the steps (dsr.steps) know about the engines.

An engine writes, and carries the reader of the heavy reads (``reader``, :mod:`dsr.engines.reading`): the export
scan, the erase planning, verification's passes and counts, the near-match scan, the residue scan's data files
run where the engine runs (in this process on delta-rs, as Spark jobs on Spark), and return results the size of
the requests. The Delta log (versions, schemas, live files, statistics, deletion vectors, the commit's actions)
is always read here by the one access layer (:mod:`dsr.delta.access`); verification never rests on the writer's
reader alone (:mod:`dsr.verify.evidence`). Everything an engine is handed is already validated and built (the
MERGE source of subject keys and pseudonyms, the SQL of each mask in the engine's dialect). Subject ids travel
only as data (pyarrow columns, DataFrames), never as literals in SQL text or in commit metadata.

Each engine declares the Delta features it writes correctly (``support``, see :mod:`dsr.delta.features`); the
steps refuse a table the engine does not handle before any write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from dsr.delta.newfiles import DataFile
from dsr.delta.support import Support
from dsr.engines.matching import Matches
from dsr.engines.reading import Reader

__all__ = ["KEY_COLUMN", "CommitResult", "Engine", "ErasePlan", "Search"]

KEY_COLUMN = "__dsr_key"
"""Name of the MERGE source column holding the subject ids cast to the subject column's type."""


@dataclass(frozen=True)
class ErasePlan:
    """What one erase commit does to one table.

    ``operation`` is ``features.DELETE`` (delete the matched rows) or ``features.UPDATE`` (set ``updates``:
    column -> SQL expression in the engine's dialect; the target alias is ``t``, the source alias ``s``).
    ``metadata`` goes into the Delta commit (run id, request ids; never subject ids). ``partitions``: the
    values of non-personal partition columns where the subjects' rows are (read just before); the MERGE is
    restricted to them, so it reads only those partitions' files (empty: the whole table).
    """

    uri: str
    subject: str
    operation: str
    updates: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    partitions: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Search:
    """What a sweep asks an engine to search: a table's subject column (logical and physical name, Arrow type)
    in some of its files (``full``: the whole current version) for values whose form's digest, with ``secret``
    (the column's identifier kind's), is one of ``digests`` (a pyarrow string array, that kind's entries). A
    value's form is its canonical text under the kind's normalisation ``steps`` (none: the value as text)."""

    column: str
    physical: str
    arrow_type: Any
    files: list[DataFile]
    full: bool
    digests: Any
    secret: str = field(repr=False)
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommitResult:
    """The engine's own account of its commit (its metrics). dsr checks it against the log and a re-read."""

    version_before: int
    version_after: int
    rows_deleted: int = 0
    rows_updated: int = 0
    rows_copied: int = 0
    files_added: int = 0
    files_removed: int = 0

    @property
    def committed(self) -> bool:
        return self.version_after != self.version_before


@runtime_checkable
class Engine(Protocol):
    name: str
    dialect: str
    """'datafusion' (delta-rs) or 'spark': which SQL the mask expressions are written in."""
    support: Support
    """The Delta features this engine deletes and updates correctly (the protocol gate reads it)."""
    reader: Reader
    """Where the heavy reads run (:mod:`dsr.engines.reading`)."""

    def erase(self, plan: ErasePlan, source: Any) -> CommitResult:
        """One Delta commit: MERGE ``source`` (a pyarrow Table with KEY_COLUMN and pseudonym columns) into
        the table ON t.<subject> = s.KEY_COLUMN, deleting or updating matched rows."""
        ...

    def history(self, uri: str, limit: int = 20) -> list[dict[str, Any]]:
        """Recent commit infos, newest first, each with 'version', 'operationMetrics' and custom metadata."""
        ...

    def find_suppressed(self, uri: str, search: Search) -> Matches:
        """The subject values in the table (its whole current version, or ``search.files``) whose form's keyed
        digest is on the suppression list, computed by this engine's SQL (:mod:`dsr.engines.matching`): each
        value (as text) with its form."""
        ...

    def close(self) -> None:
        ...
