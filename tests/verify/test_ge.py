"""Unit tests of ``dsr.verify.ge``, the Great Expectations adapter: ``expectations_dir``, ``load_suite_spec``,
``SuiteOutcome`` and ``Validator`` run on small pandas frames (built from pyarrow, as ``dsr.verify.checks`` does).

Expected outcomes are literal: which suite passes, which expectation fails, how many rows were unexpected.
Pseudonyms and masked values come from ``tests/expect.py``, never from dsr's own masks.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from dsr.core.masks import MASKS
from dsr.verify.ge import SuiteOutcome, Validator, expectations_dir, load_suite_spec
from tests import expect, lakes
from tests.leaks import Leaks

REPO = Path(__file__).resolve().parents[2]

# Every suite of expectations/ and the GE parameters ({"$PARAMETER": name}) it needs at validation time.
PARAMETERS: dict[str, set[str]] = {
    "dsr_erased_absent": {"erased_subjects"},
    "dsr_erased_rows": set(),
    "dsr_files_agree": {"files_rows_low", "files_rows_high", "non_null_low", "non_null_high", "log_rows_low",
                        "log_rows_high", "log_non_null_low", "log_non_null_high"},
    "dsr_mask_ipv4_24": set(),
    "dsr_mask_month": set(),
    "dsr_mask_nullify": set(),
    "dsr_mask_pseudonymise": {"pseudonyms"},
    "dsr_mask_redact": {"redact_values"},
    "dsr_mask_year": set(),
    "dsr_read_sighted": {"non_null_low", "non_null_high"},
    "dsr_reconcile": {"expected_rows_after", "rows_matched", "expected_others_after", "expected_marked_after"},
}
# Column placeholders a suite's kwargs name ("$subject" / "$column"), filled in when the suite is loaded.
PLACEHOLDERS: dict[str, set[str]] = {
    "dsr_erased_absent": {"$subject"},
    "dsr_mask_ipv4_24": {"$column"},
    "dsr_mask_month": {"$column"},
    "dsr_mask_nullify": {"$column"},
    "dsr_mask_pseudonymise": {"$column"},
    "dsr_mask_redact": {"$column"},
    "dsr_mask_year": {"$column"},
}

# Subject ids that cannot occur by chance in a GE result or a suite name.
SECRET_IDS = ["subj-7f3a-alice", "subj-9c1e-bob"]


def _parameters(value: Any) -> set[str]:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            return {str(value["$PARAMETER"])}
        return {p for v in value.values() for p in _parameters(v)}
    if isinstance(value, list):
        return {p for v in value for p in _parameters(v)}
    return set()


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value} if value in ("$subject", "$column") else set()
    if isinstance(value, dict):
        return {p for v in value.values() for p in _placeholders(v)}
    if isinstance(value, list):
        return {p for v in value for p in _placeholders(v)}
    return set()


def _frame(columns: dict[str, Any], schema: Any = None) -> pd.DataFrame:
    """A pandas frame made from a pyarrow table, the way the checks make theirs."""
    table = pa.table(columns, schema=schema) if schema is not None else pa.table(columns)
    return table.to_pandas()


@pytest.fixture(scope="module")
def validator() -> Iterator[Validator]:
    """One GE context for the module (importing GE costs seconds)."""
    yield Validator.shared()


# --- suite files ------------------------------------------------------------------------------------------


def test_expectations_dir_is_the_repository_folder_unless_the_environment_names_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DSR_EXPECTATIONS", raising=False)
    assert expectations_dir() == REPO / "expectations"
    monkeypatch.setenv("DSR_EXPECTATIONS", str(tmp_path))
    assert expectations_dir() == tmp_path


def test_the_suite_files_are_exactly_the_documented_suites(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_EXPECTATIONS", raising=False)
    assert sorted(p.stem for p in expectations_dir().glob("*.json")) == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_every_suite_loads_and_names_its_parameters(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_EXPECTATIONS", raising=False)
    spec = load_suite_spec(name)
    assert spec["name"] == name
    assert spec["expectations"], f"{name} has no expectation"
    assert all(e["type"].startswith("expect_") for e in spec["expectations"])
    assert spec["meta"]["dsr"]["description"].strip()
    assert _parameters(spec["expectations"]) == PARAMETERS[name]
    assert _placeholders(spec["expectations"]) == PLACEHOLDERS.get(name, set())


def test_every_mask_names_an_existing_suite_and_supplies_exactly_its_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DSR_EXPECTATIONS", raising=False)
    from dsr.core.masks import Mask

    assert sorted(MASKS) == ["ipv4_24", "month", "nullify", "pseudonymise", "redact", "year"]
    for name, kind in MASKS.items():
        spec = load_suite_spec(kind.suite)
        mask = Mask(name, "[erased]") if name == "redact" else Mask(name)
        assert set(kind.params(mask, ["psn_0"])) == _parameters(spec["expectations"]), name


def test_a_missing_suite_is_a_file_not_found_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_EXPECTATIONS", raising=False)
    with pytest.raises(FileNotFoundError, match="'dsr_no_such_suite' not found"):
        load_suite_spec("dsr_no_such_suite")


def test_a_suite_is_read_from_the_folder_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {"name": "dsr_test_ge_only_here", "expectations": [
        {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 3}}]}
    (tmp_path / "dsr_test_ge_only_here.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("DSR_EXPECTATIONS", str(tmp_path))
    assert load_suite_spec("dsr_test_ge_only_here") == spec


# --- SuiteOutcome -----------------------------------------------------------------------------------------


def test_suite_outcome_adds_counts_and_keeps_each_failed_expectation_once() -> None:
    total = SuiteOutcome("dsr_erased_absent")
    assert total.as_dict() == {"suite": "dsr_erased_absent", "success": True, "batches": 0, "rows_checked": 0,
                               "unexpected": 0, "failed_expectations": []}
    total.add(SuiteOutcome("x", success=True, batches=1, rows_checked=10, unexpected=0))
    total.add(SuiteOutcome("x", success=False, batches=1, rows_checked=5, unexpected=2,
                           failed_expectations=["expect_a[c]"]))
    total.add(SuiteOutcome("x", success=True, batches=1, rows_checked=1, unexpected=0))
    total.add(SuiteOutcome("x", success=False, batches=2, rows_checked=4, unexpected=1,
                           failed_expectations=["expect_a[c]", "expect_b"]))
    assert total.as_dict() == {"suite": "dsr_erased_absent", "success": False, "batches": 5, "rows_checked": 20,
                               "unexpected": 3, "failed_expectations": ["expect_a[c]", "expect_b"]}


# --- Validator: absence of erased subjects ----------------------------------------------------------------


def test_validator_is_shared() -> None:
    assert Validator.shared() is Validator.shared()


def test_erased_absent_passes_when_no_erased_key_is_in_the_column(validator: Validator) -> None:
    frame = _frame({"user_id": pa.array(["u3", "u4", None, "u5"], pa.string()), "page": ["/", "/a", "/b", "/c"]})
    out = validator.validate("dsr_erased_absent", frame, "pandas", subs={"$subject": "user_id"},
                             params={"erased_subjects": ["u1", "u2"]})
    assert out.as_dict() == {"suite": "dsr_erased_absent", "success": True, "batches": 1, "rows_checked": 4,
                             "unexpected": 0, "failed_expectations": []}


def test_erased_absent_fails_when_one_erased_key_is_present(validator: Validator) -> None:
    frame = _frame({"user_id": pa.array(["u3", "u2", None, "u5"], pa.string())})
    out = validator.validate("dsr_erased_absent", frame, "pandas", subs={"$subject": "user_id"},
                             params={"erased_subjects": ["u1", "u2"]})
    assert out.success is False
    assert out.unexpected == 1
    assert out.rows_checked == 4
    assert out.failed_expectations == ["expect_column_values_to_not_be_in_set[user_id]"]


def test_erased_absent_on_an_integer_subject_column(validator: Validator) -> None:
    frame = _frame({"user_no": pa.array([1001, 1002, None, 1003, 1003], pa.int64())})
    ok = validator.validate("dsr_erased_absent", frame, "pandas", subs={"$subject": "user_no"},
                            params={"erased_subjects": [1007, 1011]})
    bad = validator.validate("dsr_erased_absent", frame, "pandas", subs={"$subject": "user_no"},
                             params={"erased_subjects": [1003, 1011]})
    assert ok.success and ok.unexpected == 0
    assert not bad.success and bad.unexpected == 2
    assert bad.failed_expectations == ["expect_column_values_to_not_be_in_set[user_no]"]


def test_erased_absent_passes_on_an_empty_frame(validator: Validator) -> None:
    frame = _frame({"user_id": pa.array([], pa.string())})
    out = validator.validate("dsr_erased_absent", frame, "pandas", subs={"$subject": "user_id"},
                             params={"erased_subjects": ["u1"]})
    assert out.success and out.rows_checked == 0 and out.unexpected == 0


def test_the_same_suite_serves_two_subject_columns(validator: Validator) -> None:
    a = _frame({"user_id": ["u1"]})
    b = _frame({"customer": ["u1"]})
    on_a = validator.validate("dsr_erased_absent", a, "pandas", subs={"$subject": "user_id"},
                              params={"erased_subjects": ["u9"]})
    on_b = validator.validate("dsr_erased_absent", b, "pandas", subs={"$subject": "customer"},
                              params={"erased_subjects": ["u1"]})
    assert on_a.success
    assert not on_b.success and on_b.failed_expectations == ["expect_column_values_to_not_be_in_set[customer]"]


def test_erased_rows_counts_the_rows_found_for_the_erased_subjects(validator: Validator) -> None:
    none = validator.validate("dsr_erased_rows", _frame({"user_id": pa.array([], pa.string())}), "pandas")
    two = validator.validate("dsr_erased_rows", _frame({"user_id": ["u1", "u1"]}), "pandas")
    assert none.success and none.unexpected == 0
    assert not two.success
    assert two.unexpected == 2  # a table-level expectation: its observed row count
    assert two.failed_expectations == ["expect_table_row_count_to_equal"]


def test_an_unknown_frame_kind_is_refused(validator: Validator) -> None:
    with pytest.raises(ValueError, match="unknown frame kind 'polars'"):
        validator.validate("dsr_erased_rows", _frame({"user_id": ["u1"]}), "polars")


# --- Validator: masks --------------------------------------------------------------------------------------


def test_nullify_passes_on_nulls_and_fails_on_a_value(validator: Validator) -> None:
    ok = _frame({"email": pa.array([None, None], pa.string())})
    bad = _frame({"email": pa.array([None, "a@example.org"], pa.string())})
    assert validator.validate("dsr_mask_nullify", ok, "pandas", subs={"$column": "email"}).success
    out = validator.validate("dsr_mask_nullify", bad, "pandas", subs={"$column": "email"})
    assert not out.success and out.unexpected == 1
    assert out.failed_expectations == ["expect_column_values_to_be_null[email]"]


def test_redact_fails_when_a_row_keeps_its_original_value(validator: Validator) -> None:
    params = {"redact_values": ["[erased]"]}
    ok = _frame({"full_name": ["[erased]", "[erased]"]})
    bad = _frame({"full_name": ["[erased]", "Ann"]})
    assert validator.validate("dsr_mask_redact", ok, "pandas", subs={"$column": "full_name"}, params=params).success
    out = validator.validate("dsr_mask_redact", bad, "pandas", subs={"$column": "full_name"}, params=params)
    assert not out.success and out.unexpected == 1
    assert out.failed_expectations == ["expect_column_values_to_be_in_set[full_name]"]


def test_pseudonymise_passes_on_the_pseudonym_and_fails_on_the_raw_id_or_null(validator: Validator) -> None:
    psn = expect.pseudonym(lakes.KEY, "u1")
    assert isinstance(psn, str) and psn.startswith("psn_") and len(psn) == 36
    params = {"pseudonyms": [psn]}
    subs = {"$column": "user_id"}
    assert validator.validate("dsr_mask_pseudonymise", _frame({"user_id": [psn, psn]}), "pandas", subs=subs,
                              params=params).success
    raw = validator.validate("dsr_mask_pseudonymise", _frame({"user_id": [psn, "u1"]}), "pandas", subs=subs,
                             params=params)
    assert not raw.success and raw.unexpected == 1
    assert raw.failed_expectations == ["expect_column_values_to_be_in_set[user_id]"]
    null = validator.validate("dsr_mask_pseudonymise", _frame({"user_id": pa.array([psn, None], pa.string())}),
                              "pandas", subs=subs, params=params)
    assert not null.success
    assert null.failed_expectations == ["expect_column_values_to_not_be_null[user_id]"]


def test_pseudonymise_of_an_integer_column(validator: Validator) -> None:
    psn = expect.pseudonym(lakes.KEY, "1003", "int64")
    assert isinstance(psn, int) and psn < 0
    subs = {"$column": "user_no"}
    ok = _frame({"user_no": pa.array([psn], pa.int64())})
    bad = _frame({"user_no": pa.array([psn, 1003], pa.int64())})
    assert validator.validate("dsr_mask_pseudonymise", ok, "pandas", subs=subs, params={"pseudonyms": [psn]}).success
    out = validator.validate("dsr_mask_pseudonymise", bad, "pandas", subs=subs, params={"pseudonyms": [psn]})
    assert not out.success and out.unexpected == 1


@pytest.mark.parametrize(("suite", "good", "bad"), [
    ("dsr_mask_year", dt.date(1980, 1, 1).isoformat(), dt.date(1980, 5, 17).isoformat()),
    ("dsr_mask_year", "2020-01-01T00:00:00+00:00", "2020-01-01T00:00:01+00:00"),
    ("dsr_mask_month", dt.date(1991, 2, 1).isoformat(), dt.date(1991, 2, 3).isoformat()),
    ("dsr_mask_month", "2020-03-01T00:00:00+00:00", "2020-03-15T00:00:00+00:00"),
    ("dsr_mask_month", "2020-03-01 00:00:00", "2020-03-01 07:00:00"),
    ("dsr_mask_ipv4_24", "10.1.2.0", "10.1.2.3"),
    ("dsr_mask_ipv4_24", "192.168.100.0", "not-an-ip"),
])
def test_a_generalising_mask_fails_when_a_value_is_not_generalised(
    validator: Validator, suite: str, good: str, bad: str
) -> None:
    subs = {"$column": "c"}
    ok = validator.validate(suite, _frame({"c": pa.array([good, None], pa.string())}), "pandas", subs=subs)
    assert ok.success, ok.as_dict()
    out = validator.validate(suite, _frame({"c": pa.array([good, bad, None], pa.string())}), "pandas", subs=subs)
    assert not out.success and out.unexpected == 1
    assert out.failed_expectations == ["expect_column_values_to_match_regex[c]"]


def test_the_generalising_suites_accept_what_readme_says_the_masks_produce(validator: Validator) -> None:
    born = dt.date(1980, 5, 17)
    signed = dt.datetime(2020, 3, 15, 9, 7, tzinfo=dt.UTC)
    cases: dict[str, list[Any]] = {
        "dsr_mask_year": [expect.year(born), expect.year(signed)],
        "dsr_mask_month": [expect.month(born), expect.month(signed)],
        "dsr_mask_ipv4_24": [expect.network_24("10.1.2.3"), expect.network_24("255.255.255.255")],
    }
    for suite, values in cases.items():
        texts = [v.isoformat() if isinstance(v, dt.date) else v for v in values]
        out = validator.validate(suite, _frame({"c": pa.array(texts, pa.string())}), "pandas", subs={"$column": "c"})
        assert out.success, (suite, texts, out.as_dict())


# --- Validator: sight and reconcile ------------------------------------------------------------------------


def test_read_sighted_fails_an_all_null_read_the_log_contradicts(validator: Validator) -> None:
    blind = validator.validate("dsr_read_sighted", pd.DataFrame({"non_null_read": [0]}), "pandas",
                               params={"non_null_low": 3, "non_null_high": 3})
    sighted = validator.validate("dsr_read_sighted", pd.DataFrame({"non_null_read": [3]}), "pandas",
                                 params={"non_null_low": 3, "non_null_high": 3})
    unbounded = validator.validate("dsr_read_sighted", pd.DataFrame({"non_null_read": [7]}), "pandas",
                                   params={"non_null_low": 1, "non_null_high": None})
    assert not blind.success
    assert blind.failed_expectations == ["expect_column_values_to_be_between[non_null_read]"]
    assert sighted.success
    assert unbounded.success


def test_reconcile_passes_when_counts_agree_and_names_the_count_that_does_not(validator: Validator) -> None:
    counts = {"rows_after": 8, "rows_changed": 2, "keyed_after": 0, "others_after": 8, "marked_after": 0,
              "stray_removes": 0, "table_intact": 1}
    params = {"expected_rows_after": 8, "rows_matched": 2, "expected_others_after": 8, "expected_marked_after": 0}
    ok = validator.validate("dsr_reconcile", pd.DataFrame({k: [v] for k, v in counts.items()}), "pandas",
                            params=params)
    assert ok.success and ok.failed_expectations == []
    left = {**counts, "keyed_after": 1, "table_intact": 0}
    bad = validator.validate("dsr_reconcile", pd.DataFrame({k: [v] for k, v in left.items()}), "pandas",
                             params=params)
    assert not bad.success
    assert bad.failed_expectations == ["expect_column_values_to_be_between[keyed_after]",
                                       "expect_column_values_to_be_between[table_intact]"]


# --- no subject id in an outcome ---------------------------------------------------------------------------


def test_no_outcome_carries_a_subject_id(validator: Validator) -> None:
    leaks = Leaks(SECRET_IDS, whole_token=False)
    alice, bob = SECRET_IDS
    psn = expect.pseudonym(lakes.KEY, alice)
    outcomes = [
        validator.validate("dsr_erased_absent", _frame({"user_id": [alice, bob, "other"]}), "pandas",
                           subs={"$subject": "user_id"}, params={"erased_subjects": SECRET_IDS}),
        validator.validate("dsr_erased_rows", _frame({"user_id": [alice, bob]}), "pandas"),
        validator.validate("dsr_mask_pseudonymise", _frame({"user_id": [alice, psn]}), "pandas",
                           subs={"$column": "user_id"}, params={"pseudonyms": [psn]}),
        validator.validate("dsr_mask_redact", _frame({"note": [f"call {bob}"]}), "pandas",
                           subs={"$column": "note"}, params={"redact_values": ["[erased]"]}),
        validator.validate("dsr_mask_ipv4_24", _frame({"ip": [alice]}), "pandas", subs={"$column": "ip"}),
    ]
    assert [o.success for o in outcomes] == [False, False, False, False, False]  # each saw an id...
    texts = {f"{o.suite}": json.dumps(o.as_dict()) for o in outcomes}
    assert leaks.in_texts(texts) == []  # ...and none tells it
    assert all(leaks.found_in(repr(o)) == [] for o in outcomes)
