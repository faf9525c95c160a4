"""Invariant 3 for the foundation: subject ids never reach the audit log, Delta commit info or logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from dsr.cli.main import main
from dsr.core import audit, control
from dsr.core.policy import Policy
from tests.helpers import read_rows

SECRETS = ["SUBJ-secret-123", "SUBJ-secret-456@example.org", "SUBJ-secret-789", "SUBJ-secret-csv-1"]


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _log_actions(table_uri: str) -> list[dict[str, Any]]:
    """Every action of every commit in the Delta log, minus the per-file column stats of 'add' actions
    (min/max of the data, which is where the ids legitimately live: in the table's own data)."""
    actions = []
    for commit in sorted(Path(table_uri, "_delta_log").glob("*.json")):
        for line in commit.read_text(encoding="utf-8").splitlines():
            action = json.loads(line)
            if "add" in action:
                action["add"].pop("stats", None)
            actions.append(action)
    return actions


def _busy(intake_policy: Policy, tmp_path: Path) -> Policy:
    """Intake (one by one, duplicates, CSV), claims, a completion, a failure and a release."""
    a, _ = control.submit(intake_policy, "erase", SECRETS[0], ticket="T-1", requested_by="dpo")
    control.submit(intake_policy, "export", SECRETS[1])
    control.submit(intake_policy, "erase", SECRETS[0])  # duplicate
    csv_path = tmp_path / "batch.csv"
    csv_path.write_text(f"kind,subject_id\nerase,{SECRETS[2]}\nexport,{SECRETS[3]}\n", encoding="utf-8")
    control.import_csv(intake_policy, str(csv_path))
    run = control.new_run_id()
    claimed = [r.request_id for r in control.claim(intake_policy, run)]
    b, c, d = (rid for rid in claimed if rid != a)
    control.complete(intake_policy, run, [{"request_id": a, "result": {"tables": {"events": 2}}}])
    control.fail(intake_policy, run, {b: "table users: schema changed"})
    control.release(intake_policy, run, [c, d], "waits for an export")
    return intake_policy


@pytest.fixture
def busy_policy(intake_policy: Policy, tmp_path: Path) -> Policy:
    return _busy(intake_policy, tmp_path)


def test_no_subject_id_in_the_audit_table(busy_policy: Policy) -> None:
    rows = read_rows(busy_policy.audit_uri)

    assert len(rows) >= 12
    assert _leaks(json.dumps(rows, default=str)) == []
    assert audit.verify_chain(busy_policy)[1] is None


def test_no_subject_id_in_the_delta_logs_of_the_control_and_audit_tables(busy_policy: Policy) -> None:
    for uri in (busy_policy.requests_uri, busy_policy.audit_uri):
        actions = _log_actions(uri)
        commit_infos = [a["commitInfo"] for a in actions if "commitInfo" in a]

        assert len(commit_infos) >= 4
        assert _leaks(json.dumps(commit_infos)) == [], uri
        assert _leaks(json.dumps(actions)) == [], uri


def test_the_data_is_where_the_ids_are(busy_policy: Policy) -> None:
    """Sanity check of the two tests above: the ids are in the control table, so the searches can find them."""
    stored = json.dumps(read_rows(busy_policy.requests_uri), default=str)

    assert sorted(_leaks(stored)) == sorted(SECRETS)


def test_no_subject_id_in_log_output_or_on_stderr(
    intake_policy: Policy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)

    _busy(intake_policy, tmp_path)
    assert main(["--policy", intake_policy.source, "request", "erase", SECRETS[0]]) == 0
    assert main(["--policy", intake_policy.source, "requests"]) == 0
    assert main(["--policy", intake_policy.source, "audit", "verify"]) == 0

    assert _leaks("\n".join(r.getMessage() for r in caplog.records)) == []
    assert _leaks(caplog.text) == []
    out, err = capfd.readouterr()
    assert _leaks(err) == []
    assert _leaks(out) == []  # the table lists request ids and tickets, not subjects


def test_refusals_do_not_echo_the_subject_id(intake_policy: Policy, tmp_path: Path) -> None:
    from dsr.errors import InputError

    bad = "SUBJ-secret-123\x07"
    with pytest.raises(InputError) as err:
        control.submit(intake_policy, "erase", bad)
    assert _leaks(str(err.value)) == []

    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(f"kind,subject_id\nerase,{SECRETS[0]}\nforget,{SECRETS[2]}\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        control.import_csv(intake_policy, str(csv_path))
    assert "line 3" in str(err.value) and _leaks(str(err.value)) == []
