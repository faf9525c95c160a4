"""`dsr run` on the embedded engine, end to end on a real lake (the 'done when' of the engine issue)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable, write_deltalake

from dsr import steps
from dsr.core import control
from dsr.core.policy import Policy
from dsr.delta import access
from dsr.engines.deltars import DeltaRsEngine
from tests import expect, invoke, lakes
from tests.leaks import Leaks
from tests.packages import document


def dsr(lake: lakes.Lake, *args: str) -> subprocess.CompletedProcess[str]:
    return invoke.dsr("--policy", str(lake.policy_path), *args, env=lake.env)


@pytest.fixture()
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lakes.Lake:
    return lakes.busy(tmp_path / "w").use(monkeypatch)


def _tables(policy: Policy) -> dict[str, list[dict[str, Any]]]:
    return {t.name: lakes.snapshot(t.uri) for t in policy.tables}


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        yield lakes.busy(tmp_path_factory.mktemp("pipeline") / "w").use(mp)


@pytest.fixture(scope="module")
def processed(shared_lake: lakes.Lake) -> dict[str, Any]:
    """One lake, processed once for the module's tests, which only read it (a test that changes the lake works
    on its own copy, so the tests pass in any order)."""
    policy = shared_lake.policy()
    ids = lakes.file_requests(policy)
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
    by_id = {r["user_id"]: r for r in processed["before"]["users"]}
    after = {r["user_id"]: r for r in processed["after"]["users"]}
    erased_users = [sid for sid in lakes.ERASE if sid in by_id]
    assert len(erased_users) == 4
    for sid in erased_users:
        was, row = by_id[sid], after[expect.pseudonym(lakes.KEY, sid)]
        assert row == {
            "user_id": expect.pseudonym(lakes.KEY, sid), "email": None, "full_name": "[erased]",
            "birth_date": expect.year(was["birth_date"]), "signup_at": expect.month(was["signup_at"]),
            "last_ip": expect.network_24(was["last_ip"]),
            "password_hash": was["password_hash"],  # unmasked columns keep their values
        }, sid


def test_exports_hold_exactly_each_subjects_rows(processed: dict[str, Any]) -> None:
    policy = processed["policy"]
    for sid in lakes.EXPORT:
        rid = processed["ids"][("export", sid)]
        req = control.list_requests(policy, ids=[rid])[0]
        assert req.export_uri and Path(req.export_uri).name == f"{rid}.zip"
        doc = document(req.export_uri)
        assert doc["schema_version"] == 2 and doc["request_id"] == rid and doc["subject_id"] == sid
        assert doc["identifiers"] == [{"kind": "subject", "value": sid}]  # a policy without identifiers: one
        for t in policy.tables:
            mine = [r for r in processed["before"][t.name] if _is(sid, r[t.subject])]
            # each row says it was found by the table's one subject column, of the implicit kind
            rows = expect.exported(doc["tables"][t.name], t.subject)
            assert expect.multiset(rows) == expect.multiset(mine, t.never_export), (sid, t.name)
        assert "password_hash" not in json.dumps(doc["tables"]["users"])
        # one cell of each encoding, spelled out: base64 binary, a decimal string, a UTC timestamp with Z
        events = doc["tables"]["events"]
        assert events and all(base64.b64decode(e["payload"], validate=True) for e in events)
        for order in doc["tables"]["orders"]:
            assert re.fullmatch(r"-?[0-9]+\.[0-9]{2}", order["amount"]), order["amount"]
            assert re.fullmatch(r"2025-[0-9]{2}-[0-9]{2}T00:00:00Z", order["ordered_at"]), order["ordered_at"]
    # file names carry request ids only
    assert Leaks(lakes.SUBJECTS + lakes.ERASE).in_file_names(policy.exports) == []


def test_export_reads_each_table_once_for_the_whole_batch(lake: lakes.Lake) -> None:
    policy = lake.policy()
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
    policy = lake.policy()
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


def test_verify_and_audit_pass_then_tampering_is_caught(
    processed: dict[str, Any], shared_lake: lakes.Lake, tmp_path: Path
) -> None:
    lake = lakes.copy(shared_lake, tmp_path / "copy")  # the others read the shared lake: tamper with a copy
    assert dsr(lake, "verify").returncode == 0
    audit = dsr(lake, "audit", "verify")
    assert audit.returncode == 0 and "OK" in audit.stdout
    # an erased id reappears in events: verify must fail and name the table
    events = str(lake.lake / "events")
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

    policy = lakes.busy(tmp_path / "w").use(monkeypatch).policy()
    control.submit(policy, "erase", "1012")
    batch = steps.claim_batch(policy)
    err = steps.safe_error(OSError("cannot read row 1012 of part-0001"), policy, batch["run_id"])
    assert isinstance(err, StepError) and "1012" not in str(err) and "<subject>" in str(err)
    own = InputError("table 'events': bad")
    assert steps.safe_error(own, policy, batch["run_id"]) is own
    assert "1012" not in str(steps.safe_error(OSError("1012"), None, batch["run_id"]))
