"""`dsr run` on the embedded engine, end to end on a real lake (the 'done when' of the engine issue)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable, write_deltalake

from dsr import steps
from dsr.core import control
from dsr.core.masks import apply_mask, pseudonym
from dsr.core.policy import Policy, check_against_lake, load_policy
from dsr.delta import access
from dsr.engines.deltars import DeltaRsEngine
from dsr.exports import json_value
from tests import lakes


def dsr(lake: lakes.Lake, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsr.cli", "--policy", str(lake.policy_path), *args],
        capture_output=True, text=True, env=lakes.env_with(lake), timeout=300,
    )


@pytest.fixture()
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lakes.Lake:
    built = lakes.build(tmp_path / "w")
    for k, v in built.env.items():
        monkeypatch.setenv(k, v)
    return built


def _policy(lake: lakes.Lake) -> Policy:
    policy = load_policy(lake.policy_path)
    check_against_lake(policy)
    return policy


def _file_requests(policy: Policy) -> dict[tuple[str, str], str]:
    ids = {}
    for sid in lakes.ERASE:
        ids[("erase", sid)] = control.submit(policy, "erase", sid, ticket=f"T-{len(ids)}")[0]
    for sid in lakes.EXPORT:
        ids[("export", sid)] = control.submit(policy, "export", sid)[0]
    return ids


def _tables(policy: Policy) -> dict[str, list[dict[str, Any]]]:
    return {t.name: lakes.snapshot(t.uri) for t in policy.tables}


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory: pytest.TempPathFactory) -> Any:
    built = lakes.build(tmp_path_factory.mktemp("pipeline") / "w")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in built.env.items():
            mp.setenv(k, v)
        yield built


@pytest.fixture(scope="module")
def processed(shared_lake: lakes.Lake) -> dict[str, Any]:
    """One lake, processed once for the module's read-only tests (the tampering test runs last)."""
    policy = _policy(shared_lake)
    ids = _file_requests(policy)
    before = _tables(policy)
    engine = DeltaRsEngine()
    report = steps.run(policy, engine)
    return {"policy": policy, "ids": ids, "before": before, "after": _tables(policy), "report": report,
            "engine": engine}


def test_run_completes_every_request(processed: dict[str, Any]) -> None:
    report = processed["report"]
    assert report.exit_code == 0, report.as_dict()
    assert report.summary["completed"] == 8 and report.summary["failed"] == 0
    statuses = {r.request_id: r.status for r in control.list_requests(processed["policy"])}
    assert set(statuses.values()) == {"completed"}
    assert len(statuses) == 8


def _is(sid: str, value: Any) -> bool:
    return value is not None and str(value) == sid


def test_no_erased_id_survives_and_retained_rows_stay(processed: dict[str, Any]) -> None:
    after = processed["after"]
    erased = set(lakes.ERASE)
    for name in ("events", "orders"):
        subject = processed["policy"].table(name).subject
        assert not [r for r in after[name] if str(r[subject]) in erased], name
    assert not [r for r in after["users"] if r["user_id"] in erased]
    # the retained table keeps every row
    assert after["consents"] == processed["before"]["consents"]


def test_other_subjects_rows_are_unchanged_value_for_value(processed: dict[str, Any]) -> None:
    erased = set(lakes.ERASE)
    policy = processed["policy"]
    for t in policy.tables:
        keep_before = [r for r in processed["before"][t.name] if str(r[t.subject]) not in erased]
        if t.erase == "anonymise":
            keep_after = [r for r in processed["after"][t.name] if not str(r[t.subject]).startswith("psn_")]
        else:
            keep_after = [r for r in processed["after"][t.name] if str(r[t.subject]) not in erased]
        assert keep_after == keep_before, t.name
    # NULL subjects never match
    nulls_before = [r for r in processed["before"]["events"] if r["user_id"] is None]
    assert nulls_before and nulls_before == [r for r in processed["after"]["events"] if r["user_id"] is None]


def test_anonymised_rows_hold_their_masks(processed: dict[str, Any]) -> None:
    policy = processed["policy"]
    users = policy.table("users")
    key = policy.pseudonym_key()
    kinds = {"user_id": "string"}
    by_id = {r["user_id"]: r for r in processed["before"]["users"]}
    after = {r["user_id"]: r for r in processed["after"]["users"]}
    erased_users = [sid for sid in lakes.ERASE if sid in by_id]
    assert len(erased_users) == 4
    for sid in erased_users:
        row = after[pseudonym(key, sid, "string")]
        for col, mask in users.masks:
            expected = apply_mask(mask, by_id[sid][col], key=key, subject_id=sid, kind=kinds.get(col))
            assert row[col] == expected, (col, mask)
        assert row["password_hash"] == by_id[sid]["password_hash"]  # unmasked columns keep their values


def test_exports_hold_exactly_each_subjects_rows(processed: dict[str, Any]) -> None:
    policy = processed["policy"]
    for sid in lakes.EXPORT:
        rid = processed["ids"][("export", sid)]
        req = control.list_requests(policy, ids=[rid])[0]
        assert req.export_uri and Path(req.export_uri).name == f"{rid}.json"
        doc = json.loads(Path(req.export_uri).read_text(encoding="utf-8"))
        assert doc["schema_version"] == 1 and doc["request_id"] == rid and doc["subject_id"] == sid
        for t in policy.tables:
            expected = [
                {k: json_value(v) for k, v in r.items() if k not in t.never_export}
                for r in processed["before"][t.name] if _is(sid, r[t.subject])
            ]
            key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
            assert sorted(doc["tables"][t.name], key=key) == sorted(expected, key=key), (sid, t.name)
        assert "password_hash" not in json.dumps(doc["tables"]["users"])
    # file names carry request ids only
    for f in Path(policy.exports).rglob("*"):
        assert not any(re.search(rf"(?<![0-9A-Za-z]){re.escape(s)}(?![0-9A-Za-z])", f.name)
                       for s in lakes.SUBJECTS + lakes.ERASE)


def test_export_reads_each_table_once_for_the_whole_batch(lake: lakes.Lake) -> None:
    policy = _policy(lake)
    for sid in lakes.EXPORT:
        control.submit(policy, "export", sid)
    engine = DeltaRsEngine()
    batch = steps.claim_batch(policy)
    assert batch["exports"] == 3
    access.scans.clear()
    for t in batch["export_tables"]:
        steps.export_table(policy, engine, batch["run_id"], t)
    assert dict(access.scans) == {t.uri: 1 for t in policy.tables}


def test_receipts_show_rows_versions_and_ge(processed: dict[str, Any], shared_lake: lakes.Lake) -> None:
    lake = shared_lake
    rid = processed["ids"][("erase", "1007")]
    out = dsr(lake, "receipt", rid, "--json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["status"] == "completed"
    before = processed["before"]
    assert rec["tables"]["events"]["rows"] == sum(1 for r in before["events"] if r["user_id"] == "1007")
    assert rec["tables"]["orders"]["rows"] == sum(1 for r in before["orders"] if r["user_no"] == 1007)
    assert rec["tables"]["users"]["rows"] == 1
    assert rec["tables"]["consents"]["strategy"] == "retain" and "Art. 7" in rec["tables"]["consents"]["reason"]
    for name in ("events", "users", "orders"):
        t = rec["tables"][name]
        assert t["ge_success"] is True
        assert t["version_after"] == t["version_before"] + 1
    uncastable = json.loads(dsr(lake, "receipt", processed["ids"][("erase", "x-77")], "--json").stdout)
    assert "cannot be cast" in uncastable["tables"]["orders"]["note"]
    text = dsr(lake, "receipt", rid)
    assert text.returncode == 0 and "GE passed" in text.stdout and "1007" not in text.stdout


def test_a_second_run_changes_nothing(processed: dict[str, Any]) -> None:
    policy = processed["policy"]
    again = steps.run(policy, DeltaRsEngine())
    assert again.claimed["requests"] == 0 and again.exit_code == 0
    assert _tables(policy) == processed["after"]


def test_erasure_waits_for_an_unfinished_export(lake: lakes.Lake) -> None:
    policy = _policy(lake)
    erase_id, _ = control.submit(policy, "erase", "1001")
    export_id, _ = control.submit(policy, "export", "1001")
    # someone else holds the export (a running claim): the erasure must not run
    control.claim(policy, "run_other", ids=[export_id])
    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 0
    assert control.list_requests(policy, ids=[erase_id])[0].status == "pending"
    assert any(r["user_id"] == "1001" for r in lakes.snapshot(policy.table("events").uri))


def test_a_retained_table_shows_its_reason_and_no_ge_claim(processed: dict[str, Any], shared_lake: lakes.Lake) -> None:
    rid = processed["ids"][("erase", "1003")]
    rec = json.loads(dsr(shared_lake, "receipt", rid, "--json").stdout)
    consents = rec["tables"]["consents"]
    assert consents["strategy"] == "retain" and "ge_success" not in consents
    text = dsr(shared_lake, "receipt", rid).stdout
    assert re.search(r"consents\s+retained 1 row\(s\) \(GDPR Art\. 7\(1\): proof of consent\)\s*$", text, re.M), text


def test_verify_and_audit_pass_then_tampering_is_caught(processed: dict[str, Any], shared_lake: lakes.Lake) -> None:
    lake = shared_lake
    assert dsr(lake, "verify").returncode == 0
    audit = dsr(lake, "audit", "verify")
    assert audit.returncode == 0 and "OK" in audit.stdout
    # an erased id reappears in events: verify must fail and name the table
    events = processed["policy"].table("events").uri
    schema = DeltaTable(events).schema().to_arrow()
    import pyarrow as pa

    row = pa.table({"event_id": [999_999], "user_id": ["1011"], "event_date": ["2026-01-02"], "page": ["/"],
                    "payload": [b"x"]}, schema=pa.schema(schema))
    write_deltalake(events, row, mode="append", partition_by=["event_date"])
    out = dsr(lake, "verify")
    assert out.returncode == 1
    assert re.search(r"^events\s+FAILED", out.stdout, re.M), out.stdout
    assert "1011" not in out.stdout + out.stderr


def test_safe_error_scrubs_subject_ids_from_foreign_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsr.errors import InputError, StepError

    built = lakes.build(tmp_path / "w")
    for k, v in built.env.items():
        monkeypatch.setenv(k, v)
    policy = _policy(built)
    control.submit(policy, "erase", "1012")
    batch = steps.claim_batch(policy)
    err = steps.safe_error(OSError("cannot read row 1012 of part-0001"), policy, batch["run_id"])
    assert isinstance(err, StepError) and "1012" not in str(err) and "<subject>" in str(err)
    own = InputError("table 'events': bad")
    assert steps.safe_error(own, policy, batch["run_id"]) is own
    assert "1012" not in str(steps.safe_error(OSError("1012"), None, batch["run_id"]))
