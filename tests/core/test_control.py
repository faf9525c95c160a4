"""dsr/core/control.py: claims, leases and status changes on the control table (completed, failed, released),
each audited; two claimers never get the same request."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from dsr.core import audit, control
from dsr.core.policy import Policy, load_policy
from tests import lakes
from tests.core.conftest import audit_events, start_together
from tests.lakes import INTAKE_POLICY, write_policy


def _statuses(policy: Policy) -> dict[str, str]:
    return {r.request_id: r.status for r in control.list_requests(policy)}


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
    assert {e["request_id"] for e in audit_events(intake_policy, "claimed")} == {a, b}


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
    (event,) = audit_events(intake_policy, "completed")
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
    (event,) = audit_events(intake_policy, "released")
    assert event["details"] == {"why": "waits for an export"}


def test_another_run_cannot_change_a_claimed_request(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1")
    control.claim(intake_policy, "run_owner")

    assert control.complete(intake_policy, "run_intruder", [{"request_id": rid}]) == 0
    assert control.fail(intake_policy, "run_intruder", {rid: "x"}) == 0
    assert control.release(intake_policy, "run_intruder", [rid], "x") == 0

    (req,) = control.list_requests(intake_policy)
    assert (req.status, req.run_id) == ("running", "run_owner")
    assert audit_events(intake_policy, "completed") == audit_events(intake_policy, "failed") == []


def test_an_expired_lease_is_reclaimed_and_the_old_run_can_no_longer_finish(intake_policy: Policy) -> None:
    rid, _ = control.submit(intake_policy, "erase", "u1")
    start = dt.datetime.now(dt.UTC)
    control.claim(intake_policy, "run_dead", now=start)

    assert control.claim(intake_policy, "run_next", now=start + dt.timedelta(minutes=59)) == []
    (got,) = control.claim(intake_policy, "run_next", now=start + dt.timedelta(minutes=61))

    assert got.request_id == rid and got.attempts == 2
    assert control.complete(intake_policy, "run_dead", [{"request_id": rid}]) == 0
    assert control.complete(intake_policy, "run_next", [{"request_id": rid}]) == 1
    (event,) = audit_events(intake_policy, "completed")
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

    procs = start_together(_CLAIMER, go, intake_policy.source)  # both claim at once
    outs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], outs
    got_a, got_b = (json.loads(out) for out, _ in outs)
    assert not set(got_a) & set(got_b)
    assert len(got_a) + len(got_b) == 40
    assert set(got_a) | set(got_b) == all_ids
    rows = lakes.rows(intake_policy.requests_uri)
    assert {r["status"] for r in rows} == {"running"} and {r["attempts"] for r in rows} == {1}
    owner = {r["request_id"]: r["run_id"] for r in rows}
    assert all(owner[rid] == "run_a" for rid in got_a) and all(owner[rid] == "run_b" for rid in got_b)
    assert len(audit_events(intake_policy, "claimed")) == 40
    assert audit.verify_chain(intake_policy) == (80, None)


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
