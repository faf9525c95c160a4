"""The protocol gate: which Delta features a table uses, and whether the reader and the engine handle them.

Pure (no I/O): it works on :class:`dsr.delta.access.TableInfo` and on what the engines declare.

Every table is read by the one access layer (delta-rs' DataFusion reader, :data:`READER`) for export,
erase planning and verification, and written by the engine of the run. A table passes the gate for an
operation only when every feature it *uses* is declared by the reader (for ``read``) and by the engine (for
``delete`` or ``update``). A feature nobody declared — including any feature added to Delta after this
list was written — is unsupported: the gate fails closed.

"In use" follows the protocol: a reader feature listed by a table (reader version 3) is always in use; a
writer feature listed (writer version 7) or implied by a legacy writer version (2-6) is in use when the
table's metadata shows it: ``delta.appendOnly=true``, a ``delta.constraints.*`` property, a generation
expression, an identity column, ``delta.enableChangeDataFeed=true``, a column-mapping mode,
``delta.enableInCommitTimestamps=true``. Features the protocol makes binding as soon as they are listed
(row tracking, domain metadata, clustering, ...) are in use when listed. An engine may also refuse a writer
feature as soon as it is listed, in use or not (Sail 0.7 and ``changeDataFeed``: its writer checks the list):
the gate refuses such a table for that engine too (:attr:`Support.refuses_listed`). Two uses are dsr's own:

- ``timestampPartition``: a partition column of type timestamp or timestamp_ntz (escaped ':' in paths);
- ``generatedColumns`` for ``update``: a masked column is a generated column or feeds one's expression.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsr.delta.support import (
    DELETE,
    ENGINE_SUPPORT,
    OPERATIONS,
    READ,
    READER,
    UNKNOWN_SPARK,
    UPDATE,
    Support,
)

__all__ = [
    "FeatureUse",
    "Refusal",
    "features_in_use",
    "gate",
    "listed_writer_features",
    "refusal_text",
    "unreadable_features",
]

@dataclass(frozen=True)
class FeatureUse:
    """One Delta feature a table uses, why it counts as used, and which operations it matters for.

    ``key`` is what engines declare (``name`` unless one use of a feature asks more of a writer than
    another: ``generatedColumns.masked`` — a mask rewrites a generated column or one of its inputs).
    """

    name: str
    detail: str
    affects: frozenset[str]
    key: str = ""

    @property
    def declared_as(self) -> str:
        return self.key or self.name


@dataclass(frozen=True)
class Refusal:
    feature: str
    detail: str
    operation: str
    by: str  # the reader or engine that does not handle it
    handled_by: tuple[str, ...]  # engines that do (for a read refusal: none here)

    def text(self) -> str:
        elsewhere = f"; handled by {', '.join(self.handled_by)}" if self.handled_by else ""
        return f"{self.feature} ({self.detail}): {self.by} cannot {self.operation} it{elsewhere}"

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "detail": self.detail, "operation": self.operation, "by": self.by,
                "handled_by": list(self.handled_by)}


_RW = frozenset(OPERATIONS)
_DU = frozenset((DELETE, UPDATE))


# --- what a table uses ----------------------------------------------------------------------------------------

_LEGACY_WRITER = {
    2: ("appendOnly", "invariants"),
    3: ("appendOnly", "invariants", "checkConstraints"),
    4: ("appendOnly", "invariants", "checkConstraints", "changeDataFeed", "generatedColumns"),
    5: ("appendOnly", "invariants", "checkConstraints", "changeDataFeed", "generatedColumns", "columnMapping"),
    6: ("appendOnly", "invariants", "checkConstraints", "changeDataFeed", "generatedColumns", "columnMapping",
        "identityColumns"),
}
_TRUE = "true"


def _is_true(config: Mapping[str, str], key: str) -> bool:
    return str(config.get(key, "")).strip().lower() == _TRUE


def _columns_with(info: Any, prefix: str) -> list[str]:
    return [c for c, meta in info.column_metadata.items() if any(str(k).startswith(prefix) for k in meta)]


def _property_use(name: str, info: Any) -> str | None:
    """Why a property-gated writer feature is in use on this table, or None when it is not."""
    config = info.configuration
    if name == "appendOnly":
        return "delta.appendOnly=true" if _is_true(config, "delta.appendOnly") else None
    if name == "invariants":
        cols = _columns_with(info, "delta.invariants")
        return f"column invariants on {', '.join(cols)}" if cols else None
    if name == "checkConstraints":
        keys = sorted(k for k in config if k.startswith("delta.constraints."))
        return f"{len(keys)} CHECK constraint(s)" if keys else None
    if name == "changeDataFeed":
        return "delta.enableChangeDataFeed=true" if _is_true(config, "delta.enableChangeDataFeed") else None
    if name == "generatedColumns":
        cols = _columns_with(info, "delta.generationExpression")
        return f"generated column(s) {', '.join(cols)}" if cols else None
    if name == "identityColumns":
        cols = _columns_with(info, "delta.identity.")
        return f"identity column(s) {', '.join(cols)}" if cols else None
    if name == "columnMapping":
        mode = str(config.get("delta.columnMapping.mode", "none")).lower()
        return f"delta.columnMapping.mode={mode}" if mode in ("name", "id") else None
    if name == "inCommitTimestamp":
        return "delta.enableInCommitTimestamps=true" if _is_true(config, "delta.enableInCommitTimestamps") else None
    if name == "deletionVectors":
        return "table feature"
    raise KeyError(name)


_PROPERTY_GATED = (
    "appendOnly", "invariants", "checkConstraints", "changeDataFeed", "generatedColumns", "identityColumns",
    "columnMapping", "inCommitTimestamp",
)


def features_in_use(info: Any, masked_columns: Iterable[str] = ()) -> list[FeatureUse]:
    """The features this table version uses, each with the operations it matters for.

    ``masked_columns``: the columns an anonymise erasure would rewrite (for the generated-columns rule).

    Reader side, writer side, then dsr's own uses: one walk over the protocol, kept together.
    """
    import pyarrow as pa

    uses: dict[tuple[str, frozenset[str]], FeatureUse] = {}

    def add(name: str, detail: str, affects: frozenset[str], key: str = "") -> None:
        uses.setdefault((key or name, affects), FeatureUse(name, detail, affects, key))

    # reader side
    reader_listed = list(info.reader_features or []) if info.reader_version >= 3 else []
    for name in reader_listed:
        add(name, "reader feature", _RW)
    if info.reader_version == 2 and _property_use("columnMapping", info):
        add("columnMapping", str(_property_use("columnMapping", info)), _RW)
    if info.reader_version > 3:
        add(f"readerVersion{info.reader_version}", f"minReaderVersion {info.reader_version}", _RW)

    # writer side
    if info.writer_version >= 7:
        writer_listed = [f for f in (info.writer_features or []) if f not in reader_listed]
    else:
        writer_listed = list(_LEGACY_WRITER.get(info.writer_version, ()))
    if info.writer_version > 7:
        add(f"writerVersion{info.writer_version}", f"minWriterVersion {info.writer_version}", _DU)
    for name in writer_listed:
        if name in _PROPERTY_GATED:
            why = _property_use(name, info)
            if why is not None:
                add(name, why, _RW if name == "columnMapping" else _DU)
        else:
            add(name, "writer feature", _DU)

    # dsr's own: timestamp partition columns, generated columns fed by masks
    for col in info.partition_columns:
        if col in info.schema.names and pa.types.is_timestamp(info.schema.field(col).type):
            add("timestampPartition", f"partition column {col!r} is a timestamp", _DU)
    masked = {c.lower() for c in masked_columns}
    if masked:
        for col, meta in info.column_metadata.items():
            expr = str(meta.get("delta.generationExpression") or "")
            if not expr:
                continue
            feeds = sorted(m for m in masked if _mentions(expr, m))
            if col.lower() in masked or feeds:
                why = (f"masked column {col!r} is generated" if col.lower() in masked
                       else f"generated column {col!r} is computed from masked {', '.join(repr(f) for f in feeds)}")
                add("generatedColumns", why, frozenset((UPDATE,)), key="generatedColumns.masked")
    return sorted(uses.values(), key=lambda u: (u.name, u.key, sorted(u.affects)))


def _mentions(expression: str, column: str) -> bool:
    import re

    return re.search(rf"(?<![\w`]){re.escape(column)}(?![\w`])|`{re.escape(column)}`", expression, re.I) is not None


# --- the gate ------------------------------------------------------------------------------------------------


def gate(
    info: Any, writer: Support, operations: Sequence[str], *, masked_columns: Iterable[str] = (),
    reader: Support = READER, engines: Mapping[str, Support] = ENGINE_SUPPORT,
) -> list[Refusal]:
    """Every (feature, operation) of this table that the reader or the writer does not handle."""
    out: list[Refusal] = []
    uses = features_in_use(info, masked_columns)
    for use in uses:
        for op in operations:
            if op not in use.affects:
                continue
            if op == READ:
                if not reader.handles(use.declared_as, READ):
                    out.append(Refusal(use.name, use.detail, READ, reader.name, ()))
                    break  # unreadable: what a writer could do with it no longer matters
                continue
            if not writer.handles(use.declared_as, op):
                others = tuple(sorted({s.name for s in engines.values()
                                       if s.name != writer.name and s.handles(use.declared_as, op)}))
                out.append(Refusal(use.name, use.detail, op, writer.name, others))
    if any(r.operation == READ for r in out):
        return out
    refused = {(r.feature, r.operation) for r in out}
    for name in listed_writer_features(info):
        for op in operations:
            if op == READ or name not in writer.refuses_listed or (name, op) in refused:
                continue
            others = tuple(sorted({s.name for s in engines.values() if s.name != writer.name
                                   and s.handles(name, op) and name not in s.refuses_listed}))
            out.append(Refusal(name, _listed_detail(name, uses), op, writer.name, others))
    return out


def listed_writer_features(info: Any) -> list[str]:
    """The writer features the table lists (writer version 7), whether or not its metadata switches them on."""
    return list(info.writer_features or []) if info.writer_version >= 7 else []


def _listed_detail(name: str, uses: Sequence[FeatureUse]) -> str:
    used = next((u.detail for u in uses if u.name == name), None)
    return f"listed as a writer feature; {used}" if used else "listed as a writer feature, though switched off"


def unreadable_features(info: Any, reader: Support = READER) -> list[Refusal]:
    """The features in use that the reader cannot read (empty: the reader handles the table)."""
    return gate(info, UNKNOWN_SPARK, (READ,), reader=reader)


def refusal_text(table: str, engine: str, refusals: Sequence[Refusal]) -> str:
    """One line for a request record, a log or ``dsr check``: table, engine, every feature (never an id)."""
    parts = "; ".join(r.text() for r in refusals)
    return f"table {table!r} refused on engine {engine}: unsupported Delta feature(s): {parts}"
