"""dsr/steps/nearmatch.py: a subject that matches nothing completes as "no data found", unless rows match it
after Unicode normalisation, case folding or trimming: then it fails for a person to review, and nothing is
erased or exported."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsr import steps
from dsr.cli.receipt import build_receipt
from dsr.core import control
from dsr.core.policy import Policy
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests.invoke import dsr
from tests.steps.conftest import NFC, NFD


def test_a_subject_found_nowhere_completes_as_no_data_found(small: Policy) -> None:
    rid = control.submit(small, "erase", "nobody-like-this")[0]
    xid = control.submit(small, "export", "nobody-like-this")[0]
    before = lakes.rows(small.table("events").uri)
    assert steps.run(small, DeltaRsEngine()).exit_code == 0
    for r in control.list_requests(small, ids=[rid, xid]):
        assert r.status == "completed" and r.result_json()["outcome"] == "no data found"
    assert lakes.rows(small.table("events").uri) == before
    assert build_receipt(small, rid)["outcome"] == "no data found"
    shown = dsr("--policy", small.source, "requests")
    assert "no data found" in shown.stdout
    erased = control.submit(small, "erase", "bob")[0]
    assert steps.run(small, DeltaRsEngine()).exit_code == 0
    assert control.list_requests(small, ids=[erased])[0].result_json()["outcome"] == "erased"


@pytest.mark.parametrize(("typed", "stored", "rows"), [
    (NFD, NFC, 2), ("josé", NFC, 2), ("JOSÉ", NFC, 2), ("dora", "dora ", 1),
])
def test_a_near_match_fails_for_review_and_erases_nothing(small: Policy, typed: str, stored: str, rows: int) -> None:
    assert typed != stored
    uri = small.table("events").uri
    rid = control.submit(small, "erase", typed)[0]
    xid = control.submit(small, "export", typed)[0]
    report = steps.run(small, DeltaRsEngine())
    assert report.exit_code == 1
    for r in control.list_requests(small, ids=[rid, xid]):
        assert r.status == "failed" and r.attempts >= small.max_attempts, r
        assert "match it after Unicode normalisation, case folding or trimming" in (r.error or "")
        assert f"events ({rows} row(s))" in (r.error or "")
        assert stored.strip() not in (r.error or "") and typed not in (r.error or "")
    assert [r["user_id"] for r in lakes.rows(uri)].count(stored) == rows  # nothing erased: a person reviews it
    assert not list(Path(small.exports).glob("*.zip"))  # and no export document for it
