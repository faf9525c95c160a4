"""dsr/steps/nearmatch.py with identifier kinds (issue 23): near matches are looked for per kind, in the columns
of that kind, with the kind's own normalisation.

The people lake's email kind trims and lower-cases: ``' JANE@example.org'`` is the person's, matched and erased;
only what it does not fold (a full-width spelling, which NFKC folds) is a near match. The user id kind has no
normalisation: ``'U-5 '`` is near ``u-5``. A customer number is an integer: no other spelling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import control
from dsr.core.identifiers import Identifier
from dsr.core.policy import Policy
from dsr.engines.deltars import DeltaRsEngine
from dsr.steps.nearmatch import near_matches
from tests import lakes

FULL_WIDTH = "ｊｏｅ@example.org"


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Policy:
    """The people lake, plus contacts of a full-width email and events of ``'U-5 '``."""
    lake = lakes.people(tmp_path / "w").use(monkeypatch)
    lakes.write_table(lake.lake / "contacts", {"email": [FULL_WIDTH, " JOE@Example.org"], "full_name": ["J", "K"]})
    lakes.write_table(lake.lake / "events", {"user_id": ["U-5 "], "page": ["/x"]})
    return lake.policy()


def test_a_normalised_kind_is_near_only_for_what_its_steps_do_not_fold(policy: Policy) -> None:
    found = near_matches(policy, [("r1", (Identifier("email", "joe@example.org"),))])
    assert found == {"r1": {"contacts": 1}}  # the full-width row; ' JOE@Example.org' is an exact match


def test_a_kind_without_normalisation_keeps_the_full_near_match_in_its_columns_only(policy: Policy) -> None:
    found = near_matches(policy, [("r1", (Identifier("user_id", "u-5"),)),
                                  ("r2", (Identifier("customer_no", "77"),)),
                                  ("r3", (Identifier("user_id", "jane@example.org"),))])
    assert found == {"r1": {"events": 1}}  # never in contacts (emails), never in tickets (integers)


def test_a_kind_that_folds_everything_the_near_form_does_is_not_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake = lakes.people(tmp_path / "w").use(monkeypatch)
    lake.policy_path.write_text(lake.policy_path.read_text().replace(
        "normalise: [trim, lower]", "normalise: [nfkc, lower, trim]"), encoding="utf-8")
    lakes.write_table(lake.lake / "contacts", {"email": [FULL_WIDTH], "full_name": ["J"]})
    assert near_matches(lake.policy(), [("r1", (Identifier("email", "joe@example.org"),))]) == {}


def test_an_erasure_by_email_that_only_a_full_width_spelling_matches_fails_for_review(policy: Policy) -> None:
    lakes.write_table(Path(policy.table("contacts").uri), {"email": ["ｊｉｌｌ@example.org"], "full_name": ["Jill"]})
    before = lakes.snapshot(policy.table("contacts").uri)
    jill, _ = control.submit(policy, "erase", ids=["email=Jill@Example.org"])
    nobody, _ = control.submit(policy, "erase", ids=["customer_no=4242"])  # an integer: no other spelling
    assert steps.run(policy, DeltaRsEngine()).exit_code == 1
    by = {r.request_id: r for r in control.list_requests(policy, ids=[jill, nobody])}
    assert by[jill].status == "failed" and "contacts (1 row(s))" in (by[jill].error or "")
    assert "jill" not in (by[jill].error or "").lower()
    assert by[nobody].status == "completed" and by[nobody].result_json()["outcome"] == "no data found"
    assert lakes.snapshot(policy.table("contacts").uri) == before  # a person reviews it: nothing erased


@pytest.mark.spark
def test_on_sail_the_near_match_of_a_normalised_kind_counts_what_the_local_reader_counts(
    policy: Policy, spark_connect: Any,
) -> None:
    from dsr.engines.spark import SparkEngine

    people = [("r1", (Identifier("email", "joe@example.org"),)), ("r2", (Identifier("user_id", "u-5"),))]
    with SparkEngine(spark_connect) as engine:
        assert near_matches(policy, people, engine.reader) == near_matches(policy, people) == {
            "r1": {"contacts": 1}, "r2": {"events": 1}}
