"""What each reader and engine declares it handles correctly: Delta feature -> operations (read, delete,
update). The rules that find the features a table uses, and the gate, are in :mod:`dsr.delta.features`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "DELETE", "DELTA_RS", "DELTA_SPARK", "ENGINE_SUPPORT", "OPERATIONS", "READ", "READER", "SAIL", "UNKNOWN_SPARK",
    "UPDATE", "Support",
]

READ, DELETE, UPDATE = "read", "delete", "update"
OPERATIONS = (READ, DELETE, UPDATE)


@dataclass(frozen=True)
class Support:
    """What one reader or engine handles correctly: feature name -> operations. ``notes`` explain entries.

    ``refuses_listed``: writer features the engine refuses as soon as a table *lists* them (writer version 7),
    even when the table's metadata leaves them off (``delta.enableChangeDataFeed=false``): its writer checks
    the protocol's list, not whether the feature is in use."""

    name: str
    features: Mapping[str, frozenset[str]]
    notes: Mapping[str, str] = field(default_factory=dict)
    refuses_listed: frozenset[str] = frozenset()

    def handles(self, feature: str, operation: str) -> bool:
        return operation in self.features.get(feature, frozenset())


def _ops(*ops: str) -> frozenset[str]:
    return frozenset(ops)


_RW = _ops(READ, DELETE, UPDATE)
_DU = _ops(DELETE, UPDATE)
_D = _ops(DELETE)

READER = Support(
    "delta-rs reader",
    {f: _ops(READ) for f in (
        "columnMapping", "deletionVectors", "timestampNtz", "v2Checkpoint", "variantType", "variantType-preview",
    )},
    {"typeWidening": "delta-rs 1.6 cannot read type-widened tables",
     "vacuumProtocolCheck": "delta-rs 1.6 refuses to open such tables"},
)
"""The access layer (delta-rs 1.6 DataFusion reader): the reader features it reads correctly."""

DELTA_RS = Support(
    "delta-rs",
    {
        "columnMapping": _DU, "deletionVectors": _DU, "timestampNtz": _DU, "v2Checkpoint": _DU,
        "variantType": _DU, "variantType-preview": _DU, "invariants": _DU, "checkConstraints": _DU,
        "changeDataFeed": _DU, "generatedColumns": _DU, "timestampPartition": _DU,
    },
    {
        "deletionVectors": "rewrites each file holding erased rows (the file's deletion vector goes with it)",
        "changeDataFeed": "writes change data (_change_data) for the erase commit",
        "generatedColumns.masked": "not when a mask rewrites a generated column or one of its inputs: delta-rs "
                                   "validates generated values but does not recompute them",
        "checkConstraints": "enforced: a mask that violates a constraint fails the commit, nothing is written",
    },
)
"""The delta-rs engine (deltalake 1.6 MERGE)."""

SAIL = Support(
    "spark (Sail)",
    {
        "columnMapping": _DU, "deletionVectors": _DU, "timestampNtz": _DU, "v2Checkpoint": _DU,
        "invariants": _D, "checkConstraints": _D, "generatedColumns": _D,
    },
    {
        "deletionVectors": "marks erased rows with deletion vectors: the rows stay in the files until purged",
        "variantType": "Sail 0.7 cannot read back its own MERGE of a table with a variant column (its reader "
                       "fails: unmasked nulls for a non-nullable struct field), so the erase cannot be verified",
        "variantType-preview": "as variantType",
        "timestampPartition": "Sail 0.7 MERGE writes remove paths escaped differently from their adds: "
                              "other readers see the erased rows again",
        "changeDataFeed": "Sail 0.7 cannot write change data, and refuses a table that lists changeDataFeed among "
                          "its writer features even with delta.enableChangeDataFeed off (Unsupported table "
                          "features required: [ChangeDataFeed])",
        "identityColumns": "Sail 0.7 cannot write identity columns",
        "rowTracking": "Sail 0.7 cannot write row tracking",
    },
    refuses_listed=frozenset({"changeDataFeed"}),
)
"""A Sail Spark Connect server (0.7), as measured here."""

DELTA_SPARK = Support(
    "spark (delta-spark/Databricks)",
    {f: _DU for f in (
        "columnMapping", "deletionVectors", "timestampNtz", "v2Checkpoint", "variantType", "variantType-preview",
        "invariants", "checkConstraints", "changeDataFeed", "generatedColumns", "generatedColumns.masked",
        "identityColumns", "rowTracking",
        "domainMetadata", "clustering", "inCommitTimestamp", "typeWidening", "typeWidening-preview",
        "vacuumProtocolCheck", "timestampPartition",
    )},
    {
        "deletionVectors": "marks erased rows with deletion vectors when the table enables them: the rows stay in "
                           "the files until purged (REORG TABLE ... APPLY (PURGE))",
    },
)
"""Spark with delta-spark 4.x (classic, or a Spark Connect server running it) and Databricks: Delta's own
implementation, per its documentation (not exercised here: the io.delta jars need Maven)."""

UNKNOWN_SPARK = Support("spark (unknown server)", {})
"""A Spark Connect server dsr cannot identify: nothing beyond plain tables until DSR_SPARK_SERVER says what it is."""

ENGINE_SUPPORT: Mapping[str, Support] = {
    "delta-rs": DELTA_RS,
    "spark:delta-spark": DELTA_SPARK,
    "spark:databricks": DELTA_SPARK,
    "spark:sail": SAIL,
    "spark:unknown": UNKNOWN_SPARK,
}
"""Every declared engine profile, by key (``engine`` or ``spark:<server>``)."""
