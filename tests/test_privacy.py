"""Invariant 3: subject ids never reach the audit log, Delta commit info, logs, file names or the run report.

Intake and bookkeeping first (control and audit tables), then a whole run on the busy lake. Every scan goes
through ``tests/leaks.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dsr import steps
from dsr.cli.main import main
from dsr.core import audit, control
from dsr.core.policy import Policy
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests.leaks import Leaks

SECRETS = ["SUBJ-secret-123", "SUBJ-secret-456@example.org", "SUBJ-secret-789", "SUBJ-secret-csv-1"]


LEAKS = Leaks(SECRETS, whole_token=False)


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
    rows = lakes.rows(busy_policy.audit_uri)

    assert len(rows) >= 12
    assert LEAKS.in_rows(rows) == []
    assert audit.verify_chain(busy_policy)[1] is None


def test_no_subject_id_in_the_delta_logs_of_the_control_and_audit_tables(busy_policy: Policy) -> None:
    for uri in (busy_policy.requests_uri, busy_policy.audit_uri):
        commits = list(Path(uri, "_delta_log").glob("*.json"))

        assert len(commits) >= 4
        assert LEAKS.in_commit_info(uri) == [], uri
        assert LEAKS.in_log_actions(uri) == [], uri


def test_the_data_is_where_the_ids_are(busy_policy: Policy) -> None:
    """Sanity check of the two tests above: the ids are in the control table, so the searches can find them."""
    stored = json.dumps(lakes.rows(busy_policy.requests_uri), default=str)

    assert LEAKS.found_in(stored) == sorted(SECRETS)


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

    out, err = capfd.readouterr()
    texts = {"records": "\n".join(r.getMessage() for r in caplog.records), "log": caplog.text, "stderr": err,
             "stdout": out}  # the table lists request ids and tickets, not subjects
    assert LEAKS.in_texts(texts) == []


def test_refusals_do_not_echo_the_subject_id(intake_policy: Policy, tmp_path: Path) -> None:
    from dsr.errors import InputError

    bad = "SUBJ-secret-123\x07"
    with pytest.raises(InputError) as err:
        control.submit(intake_policy, "erase", bad)
    assert LEAKS.found_in(str(err.value)) == []

    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(f"kind,subject_id\nerase,{SECRETS[0]}\nforget,{SECRETS[2]}\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        control.import_csv(intake_policy, str(csv_path))
    assert "line 3" in str(err.value) and LEAKS.found_in(str(err.value)) == []


# --- a whole run on the busy lake ------------------------------------------------------------------------

EXTRA = "1017"


def test_no_subject_id_in_commit_info_audit_logs_or_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    policy = lakes.busy(tmp_path / "w").use(monkeypatch).policy()
    ids = [*lakes.ERASE, EXTRA]
    caplog.set_level(logging.DEBUG)
    for sid in ids:
        control.submit(policy, "erase", sid)
    for sid in lakes.EXPORT:
        control.submit(policy, "export", sid)
    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 0
    assert control.list_requests(policy, status="completed")

    leaks = Leaks(set(ids + lakes.EXPORT))  # numeric ids: whole tokens, not digits inside a timestamp
    # 1. commitInfo of every Delta table (data, control, audit): predicates, metadata, metrics
    assert len(list(Path(policy.lake).rglob("_delta_log/*.json"))) > 20
    assert leaks.in_commit_info(policy.lake) == []
    # 2. the audit table, every column of every row (the hashes are hex: digits by chance)
    assert leaks.in_rows(audit.events(policy), ignore=("hash", "prev_hash")) == []
    # 3. log records of the whole run, at DEBUG; 5. the run report (what `dsr run --json` prints and what a DAG
    # would pass around)
    texts = {f"log {i}": rec.getMessage() for i, rec in enumerate(caplog.records)}
    assert leaks.in_texts({**texts, "report": json.dumps(report.as_dict(), default=str)}) == []
    # 4. names of every file written under the lake and the exports
    assert leaks.in_file_names(policy.lake, policy.exports) == []
