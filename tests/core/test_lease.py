"""dsr/core/lease.py: a purge never overlaps a run or a sweep (issue 21, point 11).

Real commands on real lakes: ``dsr run`` and ``dsr purge`` through the CLI, leases held by another thread as a
second process would hold them; on a local folder and on moto's S3 server (where the exclusive create is a PUT
with ``If-None-Match``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import control, lease
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests.invoke import dsr


def _lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wait: int = 1) -> lakes.Lake:
    lake = lakes.small(tmp_path / "w")
    text = lake.policy_path.read_text(encoding="utf-8")
    lake.policy_path.write_text(text + f"purge_after_hours: 0\nlease_wait_seconds: {wait}\n", encoding="utf-8")
    return lake.use(monkeypatch)


def _erased(lake: lakes.Lake) -> None:
    policy = lake.policy()
    control.submit(policy, "erase", "u1")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0


def _tables(lake: lakes.Lake) -> dict[str, bytes]:
    """Every file of the lake but the leases."""
    return {k: v for k, v in lakes.files(lake.lake).items() if "/_dsr/leases/" not in k}


def test_a_purge_waits_for_a_live_run_then_stops_naming_it_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = _lake(tmp_path, monkeypatch)
    _erased(lake)
    policy = lake.policy()
    lease.hold(policy, "run_other_batch", "run")  # a run in another process, between two of its steps
    before = _tables(lake)
    out = dsr("--policy", str(lake.policy_path), "purge", env=lake.env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and "run run_other_batch holds the lease" in out.stderr
    assert _tables(lake) == before
    lease.release(policy, "run_other_batch")
    again = dsr("--policy", str(lake.policy_path), "purge", env=lake.env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "are now unreadable" in again.stdout


def test_a_run_waits_for_a_purge_then_stops_naming_it_and_claims_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = _lake(tmp_path, monkeypatch)
    policy = lake.policy()
    rid, _ = control.submit(policy, "erase", "u2")
    with lease.exclusive(policy, "purge_elsewhere"):
        out = dsr("--policy", str(lake.policy_path), "run", env=lake.env)
    assert out.returncode == 1 and "purge purge_elsewhere holds the lease" in out.stderr, out.stderr
    assert control.list_requests(policy, ids=[rid])[0].status == "pending"  # nothing claimed
    done = dsr("--policy", str(lake.policy_path), "run", env=lake.env)  # the purge gave it back
    assert done.returncode == 0 and control.list_requests(policy, ids=[rid])[0].status == "completed"


def test_a_purge_goes_ahead_once_the_run_it_waits_for_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _lake(tmp_path, monkeypatch, wait=30)
    _erased(lake)
    policy = lake.policy()
    lease.hold(policy, "run_ending_soon", "run")
    released: list[dt.datetime] = []

    def end() -> None:
        released.append(dt.datetime.now(dt.UTC))
        lease.release(policy, "run_ending_soon")

    ended = threading.Timer(1.5, end)
    ended.start()
    out = dsr("--policy", str(lake.policy_path), "purge", env=lake.env)
    ended.join()
    assert out.returncode == 0, out.stdout + out.stderr
    from dsr.core import audit

    purged = [e["at"] for e in audit.events(policy) if e["event"] == "table_purged"]
    assert purged and min(purged) >= released[0]  # it wrote nothing before the run gave the lease back


def test_a_dead_holder_s_lease_runs_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _lake(tmp_path, monkeypatch)
    _erased(lake)
    policy = lake.policy()
    stale = lease.Record("run_dead", "run", dt.datetime.now(dt.UTC) - lease.SKEW - dt.timedelta(minutes=1))
    (Path(lease.folder(policy)) / "shared-run_dead.json").write_bytes(stale.encode())
    assert lease.holders(policy) == []
    out = dsr("--policy", str(lake.policy_path), "purge", env=lake.env)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sweeps_and_runs_share_and_a_purge_excludes_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _lake(tmp_path, monkeypatch)
    policy = lake.policy()
    with lease.shared(policy, "run_a", "run"), lease.shared(policy, "swp_b", "sweep"):
        assert sorted(r.holder for r in lease.holders(policy)) == ["run_a", "swp_b"]
        with pytest.raises(lease.LeaseHeld, match="holds the lease"), lease.exclusive(policy, "purge_c"):
            pass
    with lease.exclusive(policy, "purge_c"):
        assert [r.holder for r in lease.holders(policy)] == ["purge_c"]
        with pytest.raises(lease.LeaseHeld, match="purge purge_c holds the lease"):
            lease.hold(policy, "run_d", "run")
        assert [r.holder for r in lease.holders(policy)] == ["purge_c"]  # the run withdrew its record
    assert lease.holders(policy) == []


def _race(policy: Any) -> list[str]:
    """Eight purges try to take the exclusive lease at once; returns who got it while the others waited."""
    got: list[str] = []
    barrier = threading.Barrier(8)

    def purge(name: str) -> None:
        barrier.wait()
        try:
            with lease.exclusive(policy, name):
                got.append(name)
                assert len([r for r in lease.holders(policy) if r.kind == "purge"]) == 1
                time.sleep(0.2)
                got.append(name)
        except lease.LeaseHeld:
            pass

    threads = [threading.Thread(target=purge, args=(f"purge_{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_two_purges_never_hold_the_lease_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = _race(_lake(tmp_path, monkeypatch, wait=0).policy())
    assert got and all(got[i] == got[i + 1] for i in range(0, len(got), 2))  # never interleaved


@pytest.mark.s3
def test_on_s3_the_exclusive_lease_is_one_put_if_absent(s3_env: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    lake = lakes.busy(tmp_path / "w", lake_uri="s3://lake/leases-lake")
    text = lake.policy_path.read_text(encoding="utf-8") + "lease_wait_seconds: 0\n"
    lake.policy_path.write_text(text, encoding="utf-8")
    policy = lake.use(monkeypatch).policy()
    got = _race(policy)
    assert got and all(got[i] == got[i + 1] for i in range(0, len(got), 2))
    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="lake", Prefix="leases-lake/_dsr/leases/")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith(".json")  # older epochs cleaned up, no folder marker


def test_a_purge_killed_with_9_does_not_hold_the_next_one_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its lease names its process: on the same machine the next purge sees it gone (no wait at all here)."""
    from tests.invoke import dsr_process

    lake = _lake(tmp_path, monkeypatch, wait=0)
    _erased(lake)
    killed = dsr_process("--policy", str(lake.policy_path), "purge",
                         env={**lake.env, "DSR_CRASH_AT": "purge.vacuumed"})
    assert killed.returncode == -9, killed.stderr
    held = [r for r in lease.holders(lake.policy(), dt.datetime.now(dt.UTC)) if r.kind == "purge"]
    assert held == []  # its record is there, not released, not expired: but its process is gone
    out = dsr("--policy", str(lake.policy_path), "purge", env=lake.env)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.airflow
def test_in_a_dag_task_a_held_lease_fails_the_try_for_airflow_to_retry() -> None:
    """final_errors fails a task for good on bad input or a failed check; a held lease is neither: the task is
    retried (its retries and retry_delay), as the README says."""
    from airflow.sdk.exceptions import AirflowFailException

    from dsr.orchestrate.task_context import final_errors

    with pytest.raises(lease.LeaseHeld) as raised, final_errors():
        raise lease.LeaseHeld("purge: run run_x holds the lease")
    assert not isinstance(raised.value, AirflowFailException)
