"""Which subject values of a table are on the suppression list: keyed digests computed by an engine's SQL.

A sweep knows erased people only by digests (:mod:`dsr.core.suppression`), one set per identifier kind, and
searches a subject column only with the digests of the column's kind. The engine hashes each candidate value's
*form* with the kind's secret, ``sha256(concat(secret, ':', CAST(form AS string)))``, and joins the result with
the digests: the values that match are the erased people's, found without their identifiers. A value's form is
the value itself, or for a kind that normalises, its canonical text (:func:`dsr.engines.reading.canonical_text`,
the one implementation: in this process on delta-rs, in the cluster's Python workers on Spark). The secret
travels as data (a one-row table), never in SQL text; the matched values leave as data, each with its form (the
erase's MERGE source keys on the raw value, its pseudonym comes from the form).

delta-rs: DataFusion (the ``datafusion`` package, the query engine delta-rs is built on) over each data file's
subject column, read with pyarrow by its physical name (rows a deletion vector masks are read too: they are
candidates only; the MERGE touches live rows). Spark: the same SQL on the cluster (:mod:`dsr.engines.spark`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.delta import newfiles
from dsr.engines.reading import canonical_text

__all__ = ["Matches", "datafusion_matches", "match_sql"]

_TEXT = {"datafusion": "VARCHAR", "spark": "STRING"}
_DIGEST = {
    "datafusion": "encode(sha256(concat(sec.secret, ':', CAST(c.f AS VARCHAR))), 'hex')",
    "spark": "sha2(concat(sec.secret, ':', CAST(c.f AS STRING)), 256)",
}


def match_sql(dialect: str, cand: str = "cand", sec: str = "sec", dig: str = "dig") -> str:
    """The match over the views ``cand(v, f)`` (candidate values and their forms), ``sec(secret)`` (one row) and
    ``dig(d)`` (the list's digests), in the engine's dialect: the distinct candidates whose form's digest is on
    the list, value and form as text."""
    text = _TEXT[dialect]
    return (f"SELECT DISTINCT CAST(c.v AS {text}) AS v, CAST(c.f AS {text}) AS f FROM {cand} c CROSS JOIN {sec} sec "
            f"JOIN {dig} dig ON {_DIGEST[dialect]} = dig.d WHERE c.v IS NOT NULL AND c.f IS NOT NULL")


@dataclass
class Matches:
    """Subject values on the list (as text) -> their forms (what was hashed), and what was read to find them."""

    values: dict[str, str] = field(default_factory=dict)
    files_scanned: int = 0
    files_matched: int | None = 0  # None: the engine read the table, not files one by one
    rows_scanned: int | None = 0


class _DataFusion:
    def __init__(self, digests: Any, secret: str, steps: Sequence[str] = ()) -> None:
        import datafusion
        import pyarrow as pa

        self.ctx = datafusion.SessionContext()
        self.ctx.register_record_batches("sec", [[pa.record_batch({"secret": pa.array([secret], pa.string())})]])
        self.ctx.register_record_batches("dig", [[pa.record_batch({"d": digests.cast(pa.string())})]])
        self.sql = match_sql("datafusion")
        self.steps = tuple(steps)

    def match(self, values: Any) -> dict[str, str]:
        import pyarrow as pa
        import pyarrow.compute as pc

        unique = pc.unique(values.drop_null())
        if len(unique) == 0:
            return {}
        forms = canonical_text(unique, self.steps) if self.steps else unique
        self.ctx.register_record_batches("cand", [[pa.record_batch({"v": unique, "f": forms})]])
        try:
            out = self.ctx.sql(self.sql).to_arrow_table()
        finally:
            self.ctx.deregister_table("cand")
        return {str(v): str(f) for v, f in zip(out.column("v").to_pylist(), out.column("f").to_pylist(),
                                                strict=True)}


def datafusion_matches(uri: str, files: Iterable[newfiles.DataFile], physical: str, logical: str, arrow_type: Any,
                       digests: Any, secret: str, steps: Sequence[str] = ()) -> Matches:
    """The values on the list in these files of the table (each file's subject column, normalised with ``steps``
    when the column's kind normalises, hashed by DataFusion)."""
    found = Matches()
    engine = _DataFusion(digests, secret, steps)
    for f in files:
        values = newfiles.read_subject(uri, f, physical, logical, arrow_type)
        found.files_scanned += 1
        assert found.rows_scanned is not None and found.files_matched is not None
        found.rows_scanned += len(values)
        hit = engine.match(values) if len(digests) else {}
        found.files_matched += bool(hit)
        found.values.update(hit)
    return found
