"""dsr/steps/claim.py: a run claims nothing while a personal table is uncovered (the coverage gate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsr.core import control
from dsr.core.policy import load_policy
from tests import lakes
from tests.invoke import dsr


def test_a_run_claims_nothing_while_a_personal_table_is_uncovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = lakes.busy(tmp_path / "w")
    lakes.write_table(lake.lake / "crm", {"user_id": ["1003", "1004"], "score": [1, 2]})
    lake.use(monkeypatch)
    policy = load_policy(lake.policy_path)
    rid = dsr("--policy", str(lake.policy_path), "request", "erase", "1003").stdout.strip()
    before = lakes.files(lake.lake)
    out = dsr("--policy", str(lake.policy_path), "run")
    assert out.returncode == 1
    assert "crm (subject-like column: user_id)" in out.stderr and "nothing claimed" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "1003" not in out.stderr
    req = control.list_requests(policy, ids=[rid])[0]
    assert (req.status, req.attempts) == ("pending", 0)
    assert {k: v for k, v in lakes.files(lake.lake).items() if not k.startswith("_dsr")} == {
        k: v for k, v in before.items() if not k.startswith("_dsr")}
    check = dsr("--policy", str(lake.policy_path), "check")
    assert check.returncode == 1 and "crm" in check.stdout
    # exempted (or covered), the same run goes through
    text = lake.policy_path.read_text().replace("exempt:\n", "exempt:\n  - {path: crm, reason: \"scores only\"}\n")
    lake.policy_path.write_text(text)
    assert dsr("--policy", str(lake.policy_path), "run").returncode == 0
    assert control.list_requests(policy, ids=[rid])[0].status == "completed"
