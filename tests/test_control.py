"""dsr/control.py: intake, dedupe, due dates, all-or-nothing CSV import, claims and status changes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dsr.cli.main import main
from dsr.core import audit, control, intake
from dsr.core.policy import Policy, load_policy
from dsr.errors import InputError
from tests.helpers import INTAKE_POLICY, delta_version, read_rows, run_dsr, write_policy


def _statuses(policy: Policy) -> dict[str, str]:
    return {r.request_id: r.status for r in control.list_requests(policy)}


def _events(policy: Policy, event: str) -> list[dict[str, object]]:
    return [e for e in audit.events(policy) if e["event"] == event]


# --- intake -------------------------------------------------------------------------------------------------


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


def test_the_control_table_is_created_on_first_use(intake_policy: Policy) -> None:
    assert control.list_requests(intake_policy) == []
    assert delta_version(intake_policy.requests_uri) is None

    control.submit(intake_policy, "export", "u1")

    assert delta_version(intake_policy.requests_uri) is not None


def test_due_days_come_from_the_policy(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path, INTAKE_POLICY + "due_days: 10\n"))

    control.submit(policy, "erase", "u1")

    (req,) = control.list_requests(policy)
    assert req.due_at - req.received_at == dt.timedelta(days=10)


def test_an_open_duplicate_is_not_added_twice(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1", ticket="T-1")
    version = delta_version(intake_policy.requests_uri)

    again, created = control.submit(intake_policy, "erase", "u1", ticket="T-2")

    assert (again, created) == (rid, False)
    assert delta_version(intake_policy.requests_uri) == version
    assert len(control.list_requests(intake_policy)) == 1
    assert len(_events(intake_policy, "received")) == 1


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
    versions = delta_version(intake_policy.requests_uri), delta_version(intake_policy.audit_uri)

    with pytest.raises(InputError) as err:
        control.submit(intake_policy, "erase", bad)

    assert err.value.exit_code == 2
    assert (delta_version(intake_policy.requests_uri), delta_version(intake_policy.audit_uri)) == versions
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
    version = delta_version(intake_policy.requests_uri)

    proc = run_dsr("--policy", intake_policy.source, "request", "erase", bad, "--ticket", "T-9")

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "subject id" in proc.stderr
    assert delta_version(intake_policy.requests_uri) == version


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
    versions = delta_version(intake_policy.requests_uri), delta_version(intake_policy.audit_uri)

    with pytest.raises(InputError) as err:
        control.import_csv(intake_policy, _csv(tmp_path, text))

    assert f"requests.csv: {line}:" in str(err.value)
    assert (delta_version(intake_policy.requests_uri), delta_version(intake_policy.audit_uri)) == versions


def test_an_empty_csv_is_refused(intake_policy: Policy, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no requests"):
        control.import_csv(intake_policy, _csv(tmp_path, "kind,subject_id\n"))
    with pytest.raises(InputError, match="empty file"):
        control.import_csv(intake_policy, _csv(tmp_path, ""))


def test_the_cli_import_of_a_bad_csv_exits_2_naming_the_line(intake_policy: Policy, tmp_path: Path) -> None:
    path = _csv(tmp_path, "kind,subject_id\nerase,u1\nerase,\n")

    proc = run_dsr("--policy", intake_policy.source, "request", "import", path)

    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"dsr: error: {path}: line 3: subject id: empty"]
    assert delta_version(intake_policy.requests_uri) is None


# --- listing and overdue --------------------------------------------------------------------------------------


def test_overdue_is_open_past_the_due_date(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1")
    (req,) = control.list_requests(intake_policy)
    late = req.due_at + dt.timedelta(seconds=1)

    assert not req.overdue(req.due_at - dt.timedelta(seconds=1))
    assert req.overdue(late) and req.public(late)["overdue"] is True

    run = control.new_run_id()
    control.claim(intake_policy, run)
    control.complete(intake_policy, run, [{"request_id": rid}])
    (done,) = control.list_requests(intake_policy)
    assert not done.overdue(late)


def test_dsr_requests_marks_overdue_ones(
    intake_policy: Policy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
    monkeypatch.setattr(intake, "utc_now", lambda: long_ago)  # filed 45 days ago
    late, _ = control.submit(intake_policy, "erase", "u1")
    monkeypatch.undo()
    fresh, _ = control.submit(intake_policy, "erase", "u2")

    assert main(["--policy", intake_policy.source, "requests"]) == 0
    text = capsys.readouterr().out
    (late_line,) = [ln for ln in text.splitlines() if late in ln]
    (fresh_line,) = [ln for ln in text.splitlines() if fresh in ln]
    assert late_line.endswith("OVERDUE") and "OVERDUE" not in fresh_line

    assert main(["--policy", intake_policy.source, "requests", "--json"]) == 0
    listed = {r["request_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[late]["overdue"] is True and listed[fresh]["overdue"] is False


def test_requests_filter_by_status_and_refuse_an_unknown_one(intake_policy: Policy) -> None:
    a, _ = control.submit(intake_policy, "erase", "u1")
    b, _ = control.submit(intake_policy, "erase", "u2")
    control.claim(intake_policy, control.new_run_id(), ids=[a])

    assert [r.request_id for r in control.list_requests(intake_policy, status="pending")] == [b]
    assert [r.request_id for r in control.list_requests(intake_policy, status="running")] == [a]
    with pytest.raises(InputError, match="'done'"):
        control.list_requests(intake_policy, status="done")


# --- claims and status changes --------------------------------------------------------------------------------


def test_claim_moves_pending_requests_to_running_for_this_run(intake_policy: Policy) -> None:
    a, _ = control.submit(intake_policy, "erase", "u1")
    b, _ = control.submit(intake_policy, "export", "u2")
    run = control.new_run_id()
    at = dt.datetime.now(dt.UTC)

    got = control.claim(intake_policy, run, now=at)

    assert sorted(r.request_id for r in got) == sorted([a, b])
    for req in control.list_requests(intake_policy):
        assert (req.status, req.run_id, req.attempts) == ("running", run, 1)
        assert req.lease_until == at + dt.timedelta(minutes=60)
    assert control.claim(intake_policy, control.new_run_id()) == []
    assert {e["request_id"] for e in _events(intake_policy, "claimed")} == {a, b}


def test_claim_honours_limit_and_ids(intake_policy: Policy) -> None:
    ids = [control.submit(intake_policy, "erase", f"u{i}")[0] for i in range(4)]

    first = control.claim(intake_policy, control.new_run_id(), limit=2)
    chosen = control.claim(intake_policy, control.new_run_id(), ids=[ids[3]])

    assert [r.request_id for r in first] == ids[:2]  # oldest first
    assert [r.request_id for r in chosen] == [ids[3]]
    assert _statuses(intake_policy)[ids[2]] == "pending"


def test_claim_on_a_lake_without_a_control_table_gets_nothing(intake_policy: Policy) -> None:
    assert control.claim(intake_policy, control.new_run_id()) == []


def test_complete_records_the_result_and_the_export_uri(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "export", "u1")
    run = control.new_run_id()
    control.claim(intake_policy, run)

    n = control.complete(intake_policy, run, [
        {"request_id": rid, "export_uri": "/exports/req.json", "result": {"tables": {"events": 3}}}
    ])

    (req,) = control.list_requests(intake_policy)
    assert n == 1
    assert (req.status, req.export_uri, req.lease_until) == ("completed", "/exports/req.json", None)
    assert req.result_json() == {"tables": {"events": 3}}
    assert control.claim(intake_policy, control.new_run_id()) == []
    (event,) = _events(intake_policy, "completed")
    assert event["request_id"] == rid and event["run_id"] == run


def test_fail_records_the_error_and_the_next_run_retries(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1")
    run = control.new_run_id()
    control.claim(intake_policy, run)

    assert control.fail(intake_policy, run, {rid: "table events: boom"}) == 1

    (req,) = control.list_requests(intake_policy, status="failed")
    assert (req.error, req.attempts, req.lease_until) == ("table events: boom", 1, None)
    (again,) = control.claim(intake_policy, control.new_run_id())
    assert again.request_id == rid and again.attempts == 2 and again.error is None


def test_a_failed_request_stays_failed_after_max_attempts(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path, INTAKE_POLICY + "max_attempts: 2\n"))
    rid, _ = control.submit(policy, "erase", "u1")

    for _ in range(2):
        run = control.new_run_id()
        assert [r.request_id for r in control.claim(policy, run)] == [rid]
        control.fail(policy, run, {rid: "boom"})

    assert control.claim(policy, control.new_run_id()) == []
    (req,) = control.list_requests(policy, status="failed")
    assert req.request_id == rid and req.attempts == 2


def test_release_hands_a_request_back_without_counting_the_attempt(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1")
    run = control.new_run_id()
    control.claim(intake_policy, run)

    assert control.release(intake_policy, run, [rid], "waits for an export") == 1

    (req,) = control.list_requests(intake_policy)
    assert (req.status, req.attempts, req.run_id) == ("pending", 0, None)
    (event,) = _events(intake_policy, "released")
    assert event["details"] == {"why": "waits for an export"}


def test_another_run_cannot_change_a_claimed_request(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1")
    control.claim(intake_policy, "run_owner")

    assert control.complete(intake_policy, "run_intruder", [{"request_id": rid}]) == 0
    assert control.fail(intake_policy, "run_intruder", {rid: "x"}) == 0
    assert control.release(intake_policy, "run_intruder", [rid], "x") == 0

    (req,) = control.list_requests(intake_policy)
    assert (req.status, req.run_id) == ("running", "run_owner")
    assert _events(intake_policy, "completed") == _events(intake_policy, "failed") == []


def test_an_expired_lease_is_reclaimed_and_the_old_run_can_no_longer_finish(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1")
    start = dt.datetime.now(dt.UTC)
    control.claim(intake_policy, "run_dead", now=start)

    assert control.claim(intake_policy, "run_next", now=start + dt.timedelta(minutes=59)) == []
    (got,) = control.claim(intake_policy, "run_next", now=start + dt.timedelta(minutes=61))

    assert got.request_id == rid and got.attempts == 2
    assert control.complete(intake_policy, "run_dead", [{"request_id": rid}]) == 0
    assert control.complete(intake_policy, "run_next", [{"request_id": rid}]) == 1
    (event,) = _events(intake_policy, "completed")
    assert event["run_id"] == "run_next"


def test_every_intake_and_status_change_is_audited_in_an_intact_chain(intake_policy: Policy) -> None:
    a, _ = control.submit(intake_policy, "erase", "u1")
    b, _ = control.submit(intake_policy, "export", "u2")
    c, _ = control.submit(intake_policy, "erase", "u3")
    run = control.new_run_id()
    control.claim(intake_policy, run)
    control.complete(intake_policy, run, [{"request_id": a}])
    control.fail(intake_policy, run, {b: "boom"})
    control.release(intake_policy, run, [c], "later")

    kinds = [(e["event"], e["request_id"]) for e in audit.events(intake_policy)]
    assert kinds[:3] == [("received", a), ("received", b), ("received", c)]
    assert sorted(kinds[3:6]) == sorted([("claimed", a), ("claimed", b), ("claimed", c)])
    assert kinds[6:] == [("completed", a), ("failed", b), ("released", c)]
    assert audit.verify_chain(intake_policy) == (9, None)


# --- two claimers at once -----------------------------------------------------------------------------------

_CLAIMER = """
import json, os, sys, time
from dsr.core import control
from dsr.core.policy import load_policy

policy_path, me, go = sys.argv[1], sys.argv[2], sys.argv[3]
policy = load_policy(policy_path)
open(go + "." + me + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
got = []
while True:
    batch = control.claim(policy, "run_" + me, limit=2)
    if not batch:
        break
    got += [r.request_id for r in batch]
print(json.dumps(got))
"""


def test_two_claimers_in_parallel_processes_never_get_the_same_request(intake_policy: Policy, tmp_path: Path) -> None:
    csv_path = tmp_path / "many.csv"
    csv_path.write_text("kind,subject_id\n" + "".join(f"erase,s{i:03d}\n" for i in range(40)), encoding="utf-8")
    all_ids = {rid for rid, _ in control.import_csv(intake_policy, str(csv_path))}
    assert len(all_ids) == 40
    go = str(tmp_path / "go")

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, intake_policy.source, me, go],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for me in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{me}.ready").exists() for me in ("a", "b")):
        assert time.monotonic() < deadline, "claimers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    Path(go).touch()  # both start claiming at once
    outs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], outs
    got_a, got_b = (json.loads(out) for out, _ in outs)
    assert not set(got_a) & set(got_b)
    assert len(got_a) + len(got_b) == 40
    assert set(got_a) | set(got_b) == all_ids
    rows = read_rows(intake_policy.requests_uri)
    assert {r["status"] for r in rows} == {"running"} and {r["attempts"] for r in rows} == {1}
    owner = {r["request_id"]: r["run_id"] for r in rows}
    assert all(owner[rid] == "run_a" for rid in got_a) and all(owner[rid] == "run_b" for rid in got_b)
    assert len(_events(intake_policy, "claimed")) == 40
    assert audit.verify_chain(intake_policy) == (80, None)


def test_a_failed_request_with_attempts_left_counts_as_open_for_dedupe(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "dup-subject")
    control.claim(intake_policy, "run_a")
    control.fail(intake_policy, "run_a", {rid: "boom"})
    again, created = control.submit(intake_policy, "erase", "dup-subject")
    assert (again, created) == (rid, False)


def test_renewing_the_lease_keeps_a_long_run_s_batch(intake_policy: Policy) -> None:
    from dataclasses import replace

    rid, _ = control.submit(intake_policy, "erase", "long-run-subject")
    short = replace(intake_policy, claim_ttl_minutes=1)
    (claimed,) = control.claim(short, "run_long")
    assert control.renew_lease(intake_policy, "run_long") == 1
    (held,) = control.list_requests(intake_policy, ids=[rid])
    assert held.lease_until is not None and claimed.lease_until is not None
    assert held.lease_until > claimed.lease_until + dt.timedelta(minutes=30)
    # another run cannot take it while the lease holds
    assert control.claim(intake_policy, "run_other") == []
    assert control.renew_lease(intake_policy, "run_other") == 0
