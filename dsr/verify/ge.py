"""Great Expectations verification: loads the suites in expectations/ and runs them on engine frames.

Suites are GE 1.x suite files. Two kinds of placeholder: ``"$subject"`` / ``"$column"`` in a ``column``
argument name the column (filled in when the suite is loaded for a table), and ``{"$PARAMETER": name}``
values are GE expectation parameters supplied at validation time (the erased subject set, pseudonyms...).
Results are kept compact: counts only, never values, so no subject id reaches a result or a log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["SuiteOutcome", "Validator", "expectations_dir", "load_suite_spec"]

_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0, "include_unexpected_rows": False}


def expectations_dir() -> Path:
    """$DSR_EXPECTATIONS, else the repository's expectations/ folder."""
    env = os.environ.get("DSR_EXPECTATIONS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "expectations"


@cache
def load_suite_spec(name: str) -> dict[str, Any]:
    path = expectations_dir() / f"{name}.json"
    try:
        spec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"expectation suite {name!r} not found at {path}") from None
    return spec


def _fill(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str) and value in subs:
        return subs[value]
    if isinstance(value, dict):
        return {k: _fill(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, subs) for v in value]
    return value


@dataclass
class SuiteOutcome:
    suite: str
    success: bool = True
    batches: int = 0
    rows_checked: int = 0
    unexpected: int = 0
    failed_expectations: list[str] = field(default_factory=list)

    def add(self, other: SuiteOutcome) -> None:
        self.success = self.success and other.success
        self.batches += other.batches
        self.rows_checked += other.rows_checked
        self.unexpected += other.unexpected
        for f in other.failed_expectations:
            if f not in self.failed_expectations:
                self.failed_expectations.append(f)

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "success": self.success, "batches": self.batches,
            "rows_checked": self.rows_checked, "unexpected": self.unexpected,
            "failed_expectations": self.failed_expectations,
        }


class Validator:
    """One ephemeral GE context per process (importing GE costs seconds: share it)."""

    _instance: Validator | None = None

    def __init__(self) -> None:
        import logging

        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context.types.base",
                     "py4j"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self._batch_defs: dict[str, Any] = {}
        self._suites: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    @classmethod
    def shared(cls) -> Validator:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _batch_definition(self, frame_kind: str) -> Any:
        if frame_kind not in self._batch_defs:
            source: Any
            if frame_kind == "pandas":
                source = self.context.data_sources.add_pandas("dsr_pandas")
            elif frame_kind == "spark":
                source = self.context.data_sources.add_spark("dsr_spark")
            else:
                raise ValueError(f"unknown frame kind {frame_kind!r}")
            asset = source.add_dataframe_asset("frames")
            self._batch_defs[frame_kind] = asset.add_batch_definition_whole_dataframe("whole")
        return self._batch_defs[frame_kind]

    def suite(self, name: str, subs: dict[str, str]) -> Any:
        key = (name, tuple(sorted(subs.items())))
        if key not in self._suites:
            import great_expectations.expectations as gxe

            spec = load_suite_spec(name)
            suffix = "_".join(f"{v}" for _, v in sorted(subs.items()))
            suite = self._gx.ExpectationSuite(name=f"{name}__{suffix}" if suffix else name, meta=spec.get("meta"))
            for exp in spec["expectations"]:
                cls_name = "".join(p.capitalize() for p in exp["type"].split("_"))
                cls = getattr(gxe, cls_name)
                suite.add_expectation(cls(**_fill(exp["kwargs"], subs)))
            self._suites[key] = self.context.suites.add(suite)
        return self._suites[key]

    def validate(
        self, name: str, frame: Any, frame_kind: str, *, subs: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> SuiteOutcome:
        suite = self.suite(name, subs or {})
        batch = self._batch_definition(frame_kind).get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, expectation_parameters=params or {}, result_format=_RESULT_FORMAT)
        out = SuiteOutcome(suite=name, success=bool(result.success), batches=1)
        for r in result.results:
            res = r.result or {}
            out.rows_checked = max(out.rows_checked, int(res.get("element_count") or 0))
            out.unexpected += int(res.get("unexpected_count") or 0)
            observed = res.get("observed_value")
            if not r.success and "unexpected_count" not in res and isinstance(observed, int):
                out.unexpected += observed  # table-level: e.g. rows found for erased subjects
            if not r.success:
                column = (r.expectation_config.kwargs or {}).get("column")
                name = r.expectation_config.type + (f"[{column}]" if column else "")
                if name not in out.failed_expectations:
                    out.failed_expectations.append(name)
        return out
