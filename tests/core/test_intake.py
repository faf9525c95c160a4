"""dsr/core/intake.py: filing requests one by one or from a CSV file (all or nothing), open duplicates not added
twice, due dates from the policy, bad input refused before anything is written."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from dsr.core import control
from dsr.core.policy import Policy, load_policy
from dsr.errors import InputError
from tests import lakes
from tests.core.conftest import audit_events
from tests.invoke import dsr
from tests.lakes import INTAKE_POLICY, write_policy


def test_a_request_is_filed_pending_due_in_30_days(intake_policy: Policy) -> None:
    before = dt.datetime.now(dt.UTC)

    rid, created = control.submit(intake_policy, "erase", "u1", ticket="T-1", requested_by="dpo@example.org")

    (req,) = control.list_requests(intake_policy)
    assert created and rid.startswith("req_") and req.request_id == rid
    assert (req.kind, req.subject_id, req.status, req.attempts) == ("erase", "u1", "pending", 0)
    assert (req.ticket, req.requested_by) == ("T-1", "dpo@example.org")
    assert before <= req.received_at <= dt.datetime.now(dt.UTC)
    assert req.due_at - req.received_at == dt.timedelta(days=30)
    assert req.run_id is None and req.lease_until is None and req.error is None


def test_due_days_come_from_the_policy(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path, INTAKE_POLICY + "due_days: 10\n"))

    control.submit(policy, "erase", "u1")

    (req,) = control.list_requests(policy)
    assert req.due_at - req.received_at == dt.timedelta(days=10)


def test_an_open_duplicate_is_not_added_twice(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1", ticket="T-1")
    version = lakes.version(intake_policy.requests_uri)

    again, created = control.submit(intake_policy, "erase", "u1", ticket="T-2")

    assert (again, created) == (rid, False)
    assert lakes.version(intake_policy.requests_uri) == version
    assert len(control.list_requests(intake_policy)) == 1
    assert len(audit_events(intake_policy, "received")) == 1


def test_the_same_subject_may_ask_for_an_export_and_an_erasure(intake_policy: Policy) -> None:
    erase, _ = control.submit(intake_policy, "erase", "u1")
    export, created = control.submit(intake_policy, "export", "u1")

    assert created and export != erase
    assert sorted(r.kind for r in control.list_requests(intake_policy)) == ["erase", "export"]


def test_a_running_request_is_a_duplicate_but_a_completed_one_is_not(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1")
    run = control.new_run_id()
    control.claim(intake_policy, run)

    assert control.submit(intake_policy, "erase", "u1") == (rid, False)

    control.complete(intake_policy, run, [{"request_id": rid}])
    fresh, created = control.submit(intake_policy, "erase", "u1")
    assert created and fresh != rid


@pytest.mark.parametrize(
    "bad",
    ["", "x" * 257, "u1\n", "u\x00", "u\x1b[31m", "u\u2028v", "u\x7f", " u1", "u1\t"],
    ids=["empty", "257-chars", "newline", "nul", "escape", "line-separator", "del", "leading-space", "tab"],
)
def test_a_bad_subject_id_is_refused_and_nothing_is_written(intake_policy: Policy, bad: str) -> None:
    control.submit(intake_policy, "erase", "u1")
    versions = lakes.version(intake_policy.requests_uri), lakes.version(intake_policy.audit_uri)

    with pytest.raises(InputError) as err:
        control.submit(intake_policy, "erase", bad)

    assert err.value.exit_code == 2
    assert (lakes.version(intake_policy.requests_uri), lakes.version(intake_policy.audit_uri)) == versions
    if bad.strip():
        assert bad.strip() not in str(err.value)


def test_a_subject_id_of_256_characters_is_accepted(intake_policy: Policy) -> None:
    _, created = control.submit(intake_policy, "erase", "é" * 256)

    assert created


@pytest.mark.parametrize(("field", "value"), [("ticket", "T\n1"), ("requested_by", "x" * 257)])
def test_a_bad_ticket_or_requester_is_refused(intake_policy: Policy, field: str, value: str) -> None:
    with pytest.raises(InputError, match=field):
        control.submit(intake_policy, "erase", "u1", **{field: value})

    assert control.list_requests(intake_policy) == []


def test_an_unknown_kind_is_refused(intake_policy: Policy) -> None:
    with pytest.raises(InputError, match="'forget'"):
        control.submit(intake_policy, "forget", "u1")


@pytest.mark.parametrize(
    "bad", ["", "x" * 257, "u\x01"], ids=["empty", "257-chars", "control-char"]
)
def test_the_cli_exits_2_on_a_bad_id_and_leaves_the_control_table_as_it_was(
    intake_policy: Policy, bad: str
) -> None:
    control.submit(intake_policy, "erase", "u1")
    version = lakes.version(intake_policy.requests_uri)

    proc = dsr("--policy", intake_policy.source, "request", "erase", bad, "--ticket", "T-9")

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "subject id" in proc.stderr
    assert lakes.version(intake_policy.requests_uri) == version


def test_a_failed_request_with_attempts_left_counts_as_open_for_dedupe(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "dup-subject")
    control.claim(intake_policy, "run_a")
    control.fail(intake_policy, "run_a", {rid: "boom"})
    again, created = control.submit(intake_policy, "erase", "dup-subject")
    assert (again, created) == (rid, False)


# --- CSV import ---------------------------------------------------------------------------------------------


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "requests.csv"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def test_a_csv_imports_every_row_deduplicated(intake_policy: Policy, tmp_path: Path) -> None:
    existing, _ = control.submit(intake_policy, "erase", "u1")
    path = _csv(tmp_path, """\
        kind,subject_id,ticket,requested_by
        erase,u1,T-1,dpo
        export,u2,T-2,dpo

        erase,u3,,
        export,u2,T-3,dpo
        """)

    results = control.import_csv(intake_policy, path)

    assert [created for _, created in results] == [False, True, True, False]
    assert results[0][0] == existing and results[3][0] == results[1][0]
    rows = {(r.kind, r.subject_id): r for r in control.list_requests(intake_policy)}
    assert sorted(rows) == [("erase", "u1"), ("erase", "u3"), ("export", "u2")]
    assert rows[("erase", "u3")].ticket is None and rows[("export", "u2")].ticket == "T-2"


def test_a_csv_with_only_the_two_required_columns_imports(intake_policy: Policy, tmp_path: Path) -> None:
    path = _csv(tmp_path, "\ufeffkind,subject_id\nerase,u1\n")

    assert [c for _, c in control.import_csv(intake_policy, path)] == [True]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("kind,subject_id\nerase,u1\nexport,u2\nerase,\n", "line 4"),
        ("kind,subject_id\nerase,u1\nforget,u2\n", "line 3"),
        ("kind,subject_id\nerase,u1\nerase,u2,extra\n", "line 3"),
        ("kind,subject_id\nerase,u1\nerase,\"u\x01\"\n", "line 3"),
        ("kind,subject_id,ticket\nerase,u1,T-1\nexport,u2,\"T\n2\"\n", "line 4"),
        ("subject_id,kind\nu1,erase\n", "line 1"),
    ],
    ids=["empty-id", "unknown-kind", "extra-field", "control-char", "multiline-ticket", "bad-header"],
)
def test_a_csv_with_any_bad_row_imports_nothing_and_names_the_line(
    intake_policy: Policy, tmp_path: Path, text: str, line: str
) -> None:
    control.submit(intake_policy, "erase", "u0")
    versions = lakes.version(intake_policy.requests_uri), lakes.version(intake_policy.audit_uri)

    with pytest.raises(InputError) as err:
        control.import_csv(intake_policy, _csv(tmp_path, text))

    assert f"requests.csv: {line}:" in str(err.value)
    assert (lakes.version(intake_policy.requests_uri), lakes.version(intake_policy.audit_uri)) == versions


def test_an_empty_csv_is_refused(intake_policy: Policy, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no requests"):
        control.import_csv(intake_policy, _csv(tmp_path, "kind,subject_id\n"))
    with pytest.raises(InputError, match="empty file"):
        control.import_csv(intake_policy, _csv(tmp_path, ""))


def test_the_cli_import_of_a_bad_csv_exits_2_naming_the_line(intake_policy: Policy, tmp_path: Path) -> None:
    path = _csv(tmp_path, "kind,subject_id\nerase,u1\nerase,\n")

    proc = dsr("--policy", intake_policy.source, "request", "import", path)

    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"dsr: error: {path}: line 3: subject id: empty"]
    assert lakes.version(intake_policy.requests_uri) is None

