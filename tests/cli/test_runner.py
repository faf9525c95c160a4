"""Unit tests of ``dsr/cli/runner.py``: ``cli_run`` (``dsr run``), ``verify_all`` and ``cli_verify`` (``dsr verify``).

Every lake is a real busy lake (``tests/lakes.py``); counts expected of a run are the requests each test files.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dsr import steps
from dsr.cli.runner import cli_run, cli_verify, verify_all
from dsr.core import control
from dsr.core.policy import Policy
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests.invoke import dsr
from tests.leaks import Leaks

VERIFIED_TABLES = ["events", "users", "orders"]  # the busy policy's delete/anonymise tables; consents is retained


@pytest.fixture()
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lakes.Lake:
    monkeypatch.delenv("DSR_ENGINE", raising=False)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    return lakes.busy(tmp_path / "w").use(monkeypatch)


def _file(policy: Policy, erase: list[str], export: list[str]) -> list[str]:
    return [control.submit(policy, "erase", s)[0] for s in erase] + \
        [control.submit(policy, "export", s)[0] for s in export]


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lakes.Lake]:
    """A busy lake whose erasures and exports (``lakes.ERASE``, ``lakes.EXPORT``) ran once. Tests only read it;
    a test that changes a lake works on a copy."""
    built = lakes.busy(tmp_path_factory.mktemp("runner") / "w")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in built.env.items():
            mp.setenv(k, v)
        policy = built.policy()
        _file(policy, lakes.ERASE, lakes.EXPORT)
        report = steps.run(policy, DeltaRsEngine())
        assert report.exit_code == 0, report.as_dict()
        yield built


# --- cli_run ----------------------------------------------------------------------------------------------


def test_cli_run_json_summary_counts_the_requests_filed(lake: lakes.Lake, capsys: pytest.CaptureFixture[str]) -> None:
    policy = lake.policy()
    filed = _file(policy, lakes.ERASE, lakes.EXPORT)
    assert len(filed) == 8
    code = cli_run(policy, engine=None, remote=None, as_json=True)
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["exit_code"] == 0
    assert out["engine"] == "delta-rs" and out["errors"] == []
    assert out["claimed"]["requests"] == len(lakes.ERASE) + len(lakes.EXPORT) == 8
    assert out["claimed"]["erasures"] == len(lakes.ERASE) == 5
    assert out["claimed"]["exports"] == len(lakes.EXPORT) == 3
    assert out["summary"]["completed"] == 8 and out["summary"]["failed"] == 0
    assert out["summary"]["run_id"] == out["run_id"] == out["claimed"]["run_id"]
    statuses = {r.request_id: r.status for r in control.list_requests(policy)}
    assert statuses == dict.fromkeys(filed, "completed")
    # the erasures took effect: no erased id is left in events (read back with deltalake)
    assert not [r for r in lakes.rows(lake.lake / "events") if r["user_id"] in set(lakes.ERASE)]


def test_cli_run_with_a_run_id_claims_under_it(lake: lakes.Lake, capsys: pytest.CaptureFixture[str]) -> None:
    policy = lake.policy()
    filed = _file(policy, ["1004"], ["1009"])
    code = cli_run(policy, engine=None, remote=None, run_id="nightly-2026.01.05", as_json=False)
    assert code == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == ("run nightly-2026.01.05 (delta-rs): 2 request(s) claimed (1 export, 1 erase); "
                                    "2 completed, 0 failed")
    assert {r.request_id: r.run_id for r in control.list_requests(policy)} == dict.fromkeys(filed, "nightly-2026.01.05")
    listed = dsr("--policy", str(lake.policy_path), "requests", "--json", env=lake.env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["request_id"] for r in rows) == sorted(filed)
    assert {r["run_id"] for r in rows} == {"nightly-2026.01.05"}
    assert {r["status"] for r in rows} == {"completed"}


def test_cli_run_with_nothing_pending(lake: lakes.Lake, capsys: pytest.CaptureFixture[str]) -> None:
    policy = lake.policy()
    versions = {t.name: lakes.version(t.uri) for t in policy.tables}
    code = cli_run(policy, engine=None, remote=None, as_json=True)
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["exit_code"] == 0
    assert out["claimed"]["requests"] == 0 and out["claimed"]["exports"] == 0 and out["claimed"]["erasures"] == 0
    assert out["summary"]["completed"] == 0 and out["summary"]["failed"] == 0
    assert out["steps"] == [] and out["errors"] == []
    assert {t.name: lakes.version(t.uri) for t in policy.tables} == versions  # no table touched


def test_cli_run_text_form_with_nothing_pending(lake: lakes.Lake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_run(lake.policy(), engine="delta-rs", remote=None, run_id="idle-1", as_json=False) == 0
    assert capsys.readouterr().out == ("run idle-1 (delta-rs): 0 request(s) claimed (0 export, 0 erase); "
                                       "0 completed, 0 failed\n")


# --- verify_all / cli_verify ------------------------------------------------------------------------------


def test_verify_all_after_a_run_checks_each_table_and_all_pass(processed: lakes.Lake) -> None:
    policy = processed.policy()
    checks = verify_all(policy)
    assert [c["table"] for c in checks] == VERIFIED_TABLES  # one entry per delete/anonymise table, in order
    for c in checks:
        assert c["success"] is True, c
        assert c["suites"] and all(s["success"] for s in c["suites"]), c
        assert c["version"] == lakes.version(policy.table(c["table"]).uri), c


def test_cli_verify_passes_after_a_run(processed: lakes.Lake, capsys: pytest.CaptureFixture[str]) -> None:
    policy = processed.policy()
    assert cli_verify(policy, engine=None, remote=None, as_json=True) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["success"] is True and [t["table"] for t in out["tables"]] == VERIFIED_TABLES
    assert cli_verify(policy, engine=None, remote=None, as_json=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split() for ln in lines[:-1]] == [[name, "OK"] for name in VERIFIED_TABLES]
    assert lines[-1] == "verify: all tables OK"


def test_cli_verify_reads_in_process_with_delta_rs(processed: lakes.Lake,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_verify(processed.policy(), engine="delta-rs", remote=None, as_json=True) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["success"] is True
    assert not [s for t in out["tables"] for s in t["suites"] if s["suite"] == "dsr_files_agree"]


@pytest.mark.spark
def test_cli_verify_on_spark_reads_on_the_cluster_with_the_files_evidence(
        lake: lakes.Lake, spark_connect: Any, spark_remote: str, capsys: pytest.CaptureFixture[str]) -> None:
    from dsr.engines.spark import SparkEngine

    policy = lake.policy()
    _file(policy, lakes.ERASE, lakes.EXPORT)
    assert steps.run(policy, SparkEngine(spark_connect)).exit_code == 0
    capsys.readouterr()
    assert cli_verify(policy, engine="spark", remote=spark_remote, as_json=True) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["success"] is True and [t["table"] for t in out["tables"]] == VERIFIED_TABLES
    for t in out["tables"]:
        agree = [s for s in t["suites"] if s["suite"] == "dsr_files_agree"]
        assert len(agree) == 1 and agree[0]["success"], t
        assert any("on the cluster" in n for n in t["notes"]), t


def _append_event(lake: lakes.Lake, user_id: str) -> None:
    events = lake.lake / "events"
    schema = DeltaTable(str(events)).schema().to_arrow()
    row = pa.table({"event_id": [999_999], "user_id": [user_id], "event_date": ["2026-01-02"], "page": ["/"],
                    "payload": [b"x"]}, schema=pa.schema(schema))
    lakes.write_table(events, row, partition_by=["event_date"])


def test_cli_verify_fails_on_an_erased_id_appended_and_names_the_table_not_the_id(
    processed: lakes.Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = lakes.copy(processed, tmp_path / "copy").use(monkeypatch)
    policy = lake.policy()
    _append_event(lake, "1011")
    assert sum(1 for r in lakes.rows(lake.lake / "events") if r["user_id"] == "1011") == 1
    assert cli_verify(policy, engine=None, remote=None, as_json=False) == 1
    captured = capsys.readouterr()
    assert re.search(r"^events\s+FAILED", captured.out, re.M), captured.out
    assert re.search(r"^users\s+OK$", captured.out, re.M) and re.search(r"^orders\s+OK$", captured.out, re.M)
    assert captured.out.splitlines()[-1].startswith("verify: FAILED")
    leaks = Leaks(lakes.SUBJECTS + lakes.ERASE)
    assert leaks.found_in(captured.out + captured.err) == []
    assert cli_verify(policy, engine=None, remote=None, as_json=True) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["success"] is False
    assert {t["table"]: t["success"] for t in out["tables"]} == {"events": False, "users": True, "orders": True}
    assert leaks.found_in(captured.out.replace(str(lake.root), "<root>") + captured.err) == []


def test_verify_all_fails_a_table_it_cannot_read(processed: lakes.Lake, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    lake = lakes.copy(processed, tmp_path / "copy").use(monkeypatch)
    policy = lake.policy()
    shutil.rmtree(lake.lake / "sales" / "orders" / "_delta_log")
    checks = {c["table"]: c for c in verify_all(policy)}
    assert list(checks) == VERIFIED_TABLES
    assert checks["orders"]["success"] is False and checks["orders"]["suites"] == []
    assert checks["orders"]["notes"] and "sales/orders" in checks["orders"]["notes"][0]
    assert checks["events"]["success"] is True and checks["users"]["success"] is True


def test_verify_all_with_no_completed_erasure_still_reads_every_table(lake: lakes.Lake) -> None:
    policy = lake.policy()
    _file(policy, ["1001"], [])  # pending, not completed: not yet a subject to look for
    checks = verify_all(policy)
    assert [c["table"] for c in checks] == VERIFIED_TABLES
    assert all(c["success"] for c in checks)
    expected = {name: lakes.version(policy.table(name).uri) for name in VERIFIED_TABLES}
    assert {c["table"]: c["version"] for c in checks} == expected
