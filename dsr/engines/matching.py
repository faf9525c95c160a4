"""Which subject values of a table are on the suppression list: keyed digests computed by an engine's SQL.

A sweep knows erased people only by digests (:mod:`dsr.core.suppression`). The engine hashes each candidate
value with the list's secret, ``sha256(concat(secret, ':', CAST(value AS string)))``, and joins the result
with the digests: the values that match are the erased people's, found without their ids. The secret travels
as data (a one-row table), never in SQL text; the matched values leave as data, for the erase's MERGE source.

delta-rs: DataFusion (the ``datafusion`` package, the query engine delta-rs is built on) over each data file's
subject column, read with pyarrow by its physical name (rows a deletion vector masks are read too: they are
candidates only; the MERGE touches live rows). Spark: the same SQL on the cluster (:mod:`dsr.engines.spark`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dsr.delta import newfiles

__all__ = ["Matches", "datafusion_matches", "match_sql"]

_TEXT = {"datafusion": "VARCHAR", "spark": "STRING"}
_DIGEST = {
    "datafusion": "encode(sha256(concat(sec.secret, ':', CAST(c.v AS VARCHAR))), 'hex')",
    "spark": "sha2(concat(sec.secret, ':', CAST(c.v AS STRING)), 256)",
}


def match_sql(dialect: str, cand: str = "cand", sec: str = "sec", dig: str = "dig") -> str:
    """The match over the views ``cand(v)`` (candidate values), ``sec(secret)`` (one row) and ``dig(d)`` (the
    list's digests), in the engine's dialect: the distinct candidates whose digest is on the list, as text."""
    return (f"SELECT DISTINCT CAST(c.v AS {_TEXT[dialect]}) AS v FROM {cand} c CROSS JOIN {sec} sec "
            f"JOIN {dig} dig ON {_DIGEST[dialect]} = dig.d WHERE c.v IS NOT NULL")


@dataclass
class Matches:
    """Subject values on the list (as text), and what was read to find them."""

    values: set[str] = field(default_factory=set)
    files_scanned: int = 0
    files_matched: int | None = 0  # None: the engine read the table, not files one by one
    rows_scanned: int | None = 0


class _DataFusion:
    def __init__(self, digests: Any, secret: str) -> None:
        import datafusion
        import pyarrow as pa

        self.ctx = datafusion.SessionContext()
        self.ctx.register_record_batches("sec", [[pa.record_batch({"secret": pa.array([secret], pa.string())})]])
        self.ctx.register_record_batches("dig", [[pa.record_batch({"d": digests.cast(pa.string())})]])
        self.sql = match_sql("datafusion")

    def match(self, values: Any) -> set[str]:
        import pyarrow as pa
        import pyarrow.compute as pc

        unique = pc.unique(values.drop_null())
        if len(unique) == 0:
            return set()
        self.ctx.register_record_batches("cand", [[pa.record_batch({"v": unique})]])
        try:
            out = self.ctx.sql(self.sql).to_arrow_table()
        finally:
            self.ctx.deregister_table("cand")
        return {str(v) for v in out.column("v").to_pylist()}


def datafusion_matches(uri: str, files: Iterable[newfiles.DataFile], physical: str, logical: str, arrow_type: Any,
                       digests: Any, secret: str) -> Matches:
    """The values on the list in these files of the table (each file's subject column hashed by DataFusion)."""
    found = Matches()
    engine = _DataFusion(digests, secret)
    for f in files:
        values = newfiles.read_subject(uri, f, physical, logical, arrow_type)
        found.files_scanned += 1
        assert found.rows_scanned is not None and found.files_matched is not None
        found.rows_scanned += len(values)
        hit = engine.match(values) if len(digests) else set()
        found.files_matched += bool(hit)
        found.values |= hit
    return found
