"""What one table must prove after erasure: the GE suites, chosen by the table's strategy and masks.

``check_table`` runs, for a set of erased subjects: no row found for them (a join / pushed-down filter, on
every engine); on in-process engines every value of the subject column outside the set; for anonymised rows
(found by their pseudonym) every masked column holding its mask; and, for a batch's erase commit, row counts
before/after reconciling with the commit metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr import erasure
from dsr.engines.base import Engine
from dsr.masking import pseudonym_kind
from dsr.policy import Mask, Policy, TableSpec

__all__ = ["TableCheck", "check_table"]


@dataclass
class TableCheck:
    table: str
    success: bool = True
    suites: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, outcome: Any) -> None:
        self.suites.append(outcome.as_dict())
        self.success = self.success and bool(outcome.success)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "success": self.success, "suites": self.suites, "notes": self.notes}


def check_table(
    policy: Policy, engine: Engine, table: TableSpec, subject_ids: Sequence[str],
    reconcile: Sequence[dict[str, Any]] = (),
) -> TableCheck:
    """Run the GE suites of one table for a set of erased subjects (absence, masks, reconcile)."""
    import pandas as pd

    from dsr.verify import SuiteOutcome, Validator, mask_suite_name

    check = TableCheck(table.name)
    if table.erase == "retain":
        check.notes.append(f"retained: {table.reason}")
        return check
    validator = Validator.shared()
    schema = engine.schema(table.uri)
    ctype = schema.field(table.subject).type
    keys = erasure.subject_keys([(s, s) for s in subject_ids], ctype)
    values = keys.keys.to_pylist()

    if values:
        # 1. the rows the engine finds for the erased set (a join / pushed-down filter): there must be none
        rows = SuiteOutcome("dsr_erased_rows")
        for frame in engine.validation_frames(table.uri, [table.subject], where_in=(table.subject, keys.keys)):
            rows.add(validator.validate("dsr_erased_rows", frame, engine.frame_kind))
        check.add(rows)
        # 2. in-process engines: every value of the subject column, batch by batch, is outside the erased set
        #    (Spark would carry the set into its plan as literals, so there check 1 stands alone)
        if engine.frame_kind == "pandas":
            absent = SuiteOutcome("dsr_erased_absent")
            for frame in engine.validation_frames(table.uri, [table.subject]):
                absent.add(validator.validate(
                    "dsr_erased_absent", frame, engine.frame_kind, subs={"$subject": table.subject},
                    params={"erased_subjects": values},
                ))
            check.add(absent)
    else:
        check.notes.append("no erased subject id can be cast to this table's subject column: nothing to find")

    if table.erase == "anonymise" and values:
        subj_mask = table.mask_map[table.subject]
        if subj_mask.strategy == "pseudonymise":
            import pyarrow as pa

            key = policy.pseudonym_key()
            anonymised = pa.array(erasure.pseudonyms(keys, key, _kind(ctype)), type=ctype)
            params = {col: _mask_params(mask, erasure.pseudonyms(keys, key, _kind(schema.field(col).type))
                                        if mask.strategy == "pseudonymise" else [])
                      for col, mask in table.masks}
            outcomes = {c: SuiteOutcome(f"{mask_suite_name(m.strategy)}[{c}]") for c, m in table.masks}
            text_cols = [c for c, m in table.masks if m.strategy in ("year", "month", "ipv4_24")]
            for frame in engine.validation_frames(
                table.uri, [c for c, _ in table.masks], where_in=(table.subject, anonymised)
            ):
                frame = _as_text(frame, engine.frame_kind, text_cols)
                for col, mask in table.masks:
                    outcomes[col].add(validator.validate(
                        mask_suite_name(mask.strategy), _project(frame, engine.frame_kind, col), engine.frame_kind,
                        subs={"$column": col}, params=params[col],
                    ))
            for outcome in outcomes.values():
                check.add(outcome)
        else:
            check.notes.append("subject column nullified: anonymised rows cannot be singled out, masks not re-checked")

    for rec in reconcile:
        rows_before = engine.row_count(table.uri, rec["version_before"])
        rows_after = engine.row_count(table.uri, rec["version_after"])
        changed = rec["rows_deleted"] if table.erase == "delete" else rec["rows_updated"]
        expected_after = rows_before - rec["rows_deleted"]
        frame = pd.DataFrame({"rows_after": [rows_after], "rows_changed": [changed]})
        if engine.frame_kind == "spark":
            frame = _to_spark(engine, frame)
        outcome = validator.validate(
            "dsr_reconcile", frame, engine.frame_kind,
            params={"expected_rows_after": expected_after, "rows_matched": rec["rows_matched_total"]},
        )
        outcome.suite = f"dsr_reconcile[v{rec['version_before']}->v{rec['version_after']}]"
        check.add(outcome)
        check.notes.append(
            f"v{rec['version_before']}: {rows_before} rows, v{rec['version_after']}: {rows_after} rows, "
            f"{changed} {'deleted' if table.erase == 'delete' else 'updated'}, {rec['rows_matched_total']} matched"
        )
    return check


def _kind(arrow_type: Any) -> str:
    kind = pseudonym_kind(arrow_type)
    if kind is None:  # the policy check refuses pseudonymise on other types
        raise ValueError(f"no pseudonym form for {arrow_type}")
    return kind


def _mask_params(mask: Mask, pseudonyms: list[str | int]) -> dict[str, Any]:
    """The expectation parameters of one mask's suite."""
    if mask.strategy == "pseudonymise":
        return {"pseudonyms": pseudonyms}
    if mask.strategy == "redact":
        return {"redact_values": [mask.value]}
    return {}


def _as_text(frame: Any, kind: str, cols: Sequence[str]) -> Any:
    if not cols:
        return frame
    if kind == "pandas":
        frame = frame.copy()
        for c in cols:
            frame[c] = frame[c].map(lambda v: None if v is None or v != v else _iso(v))
        return frame
    from pyspark.sql import functions as F

    for c in cols:
        frame = frame.withColumn(c, F.col(c).cast("string"))
    return frame


def _iso(v: Any) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def _project(frame: Any, kind: str, col: str) -> Any:
    return frame[[col]] if kind == "pandas" else frame.select(col)


def _to_spark(engine: Engine, frame: Any) -> Any:
    spark = getattr(engine, "spark", None)
    if spark is None:
        raise RuntimeError("spark engine without a session")
    return spark.createDataFrame(frame)
