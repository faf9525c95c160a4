"""Unit tests of ``dsr/cli/receipt.py``: ``file_effect``, ``build_receipt`` and ``print_receipt`` (``dsr receipt``).

Expected row counts, versions and file counts are read from the lake with deltalake/pyarrow before the run
(``tests/lakes.py``), never from dsr.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from dsr import steps
from dsr.cli.receipt import build_receipt, file_effect, print_receipt
from dsr.core import control
from dsr.core.masks import Strategy
from dsr.core.policy import Policy, load_policy
from dsr.engines.deltars import DeltaRsEngine
from dsr.errors import InputError
from tests import lakes
from tests.invoke import dsr
from tests.leaks import Leaks

CONSENT_REASON = "GDPR Art. 7(1): proof of consent"
ERASED_TABLES = ("events", "users", "orders")  # delete, anonymise, delete; consents is retained


def _cli(lake: lakes.Lake, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return dsr("--policy", str(lake.policy_path), *args, env=lake.env if env is None else env)


def _matches(subject_id: str, value: Any) -> bool:
    return value is not None and str(value) == subject_id


def _files_holding(uri: str, column: str, subject_ids: set[str]) -> int:
    """How many data files of the table's current version hold a row of one of subject_ids (read with pyarrow)."""
    count = 0
    for f in DeltaTable(uri).file_uris():
        values = pq.read_table(f, columns=[column]).column(column).to_pylist()
        count += any(v is not None and str(v) in subject_ids for v in values)
    return count


def _added_files(uri: str, version: int) -> int:
    """How many ``add`` actions the Delta commit ``version`` of the table holds (read from its log file)."""
    log = Path(uri) / "_delta_log" / f"{version:020d}.json"
    return sum("add" in json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip())


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A busy lake with every erasure and export of ``lakes`` filed and run once. Tests only read it."""
    lake = lakes.busy(tmp_path_factory.mktemp("receipt") / "w")
    with pytest.MonkeyPatch.context() as mp:
        policy = lake.use(mp).policy()
        ids = lakes.file_requests(policy)
        castable = {s for s in lakes.ERASE if s.isdigit()}
        before = {t.name: lakes.rows(t.uri) for t in policy.tables}
        versions = {t.name: lakes.version(t.uri) for t in policy.tables}
        holding = {t.name: _files_holding(t.uri, t.subject, castable) for t in policy.tables}
        report = steps.run(policy, DeltaRsEngine(), run_id="run-receipts")
        assert report.exit_code == 0, report.as_dict()
        yield {"lake": lake, "policy": policy, "ids": ids, "before": before, "versions": versions,
               "after_versions": {t.name: lakes.version(t.uri) for t in policy.tables}, "holding": holding}


def _subject_rows(processed: dict[str, Any], table: str, subject_id: str) -> int:
    column = processed["policy"].table(table).subject
    return sum(1 for r in processed["before"][table] if _matches(subject_id, r[column]))


# --- file_effect: literal inputs and outputs ----------------------------------------------------------------


@pytest.mark.parametrize(("entry", "expected"), [
    ({}, "no file changed"),
    ({"strategy": "delete", "files_rewritten": 0, "files_added": 0, "dv_marked": 0, "cdc_files": 0},
     "no file changed"),
    ({"strategy": "delete", "files_rewritten": None}, "no file changed"),
    ({"strategy": "delete", "files_rewritten": 2}, "2 file(s) rewritten without the rows"),
    ({"strategy": "anonymise", "files_rewritten": 1}, "1 file(s) rewritten with the rows masked"),
    ({"strategy": Strategy.ANONYMISE, "files_rewritten": 3}, "3 file(s) rewritten with the rows masked"),
    ({"files_removed": 4}, "4 file(s) rewritten without the rows"),  # older events: files_removed only
    ({"files_rewritten": 0, "files_removed": 4}, "no file changed"),  # files_rewritten, when there, wins
    ({"files_added": 2}, "2 file(s) written"),
    ({"dv_marked": 5}, "rows marked deleted by deletion vectors in 5 file(s) (still on disk until purged)"),
    ({"cdc_files": 1}, "1 change-data file(s)"),
    ({"strategy": "delete", "files_rewritten": 9, "files_added": 3},
     "9 file(s) rewritten without the rows, 3 file(s) written"),
    ({"strategy": "anonymise", "files_rewritten": 1, "files_added": 1, "dv_marked": 2, "cdc_files": 1},
     "1 file(s) rewritten with the rows masked, 1 file(s) written, "
     "rows marked deleted by deletion vectors in 2 file(s) (still on disk until purged), 1 change-data file(s)"),
])
def test_file_effect_in_words(entry: dict[str, Any], expected: str) -> None:
    assert file_effect(entry) == expected


# --- a completed erasure ------------------------------------------------------------------------------------


def test_completed_erasure_receipt_shows_rows_versions_and_ge_per_table(processed: dict[str, Any]) -> None:
    rid = processed["ids"][("erase", "1007")]
    out = _cli(processed["lake"], "receipt", rid, "--json")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    rec = json.loads(out.stdout)
    assert (rec["request_id"], rec["kind"], rec["status"], rec["ticket"]) == (rid, "erase", "completed", "T-1")
    assert rec["run_id"] == "run-receipts" and rec["attempts"] == 1 and rec["error"] is None
    assert rec["outcome"] == "erased"
    assert set(rec["tables"]) == {"events", "users", "orders", "consents"}
    expected_rows = {"events": _subject_rows(processed, "events", "1007"),
                     "orders": _subject_rows(processed, "orders", "1007"), "users": 1}
    assert expected_rows["events"] > 0 and expected_rows["orders"] > 0  # the lake gives 1007 rows to erase
    assert _subject_rows(processed, "users", "1007") == 1
    for name in ERASED_TABLES:
        t = rec["tables"][name]
        assert t["rows"] == expected_rows[name], name
        assert t["version_before"] == processed["versions"][name], name
        assert t["version_after"] == processed["after_versions"][name] == processed["versions"][name] + 1, name
        assert t["commits"] == 1, name
        assert t["files_rewritten"] == processed["holding"][name], name
        assert t["files_added"] == _added_files(processed["policy"].table(name).uri, t["version_after"]), name
        assert t["ge_success"] is True, name
        assert t["ge_suites"] and all(s["success"] for s in t["ge_suites"]), name
    assert rec["tables"]["events"]["strategy"] == "delete"
    assert rec["tables"]["users"]["strategy"] == "anonymise"
    assert rec["tables"]["orders"]["strategy"] == "delete"


def test_retained_table_shows_its_reason_and_rows_and_no_ge_claim(processed: dict[str, Any]) -> None:
    rid = processed["ids"][("erase", "1007")]
    consents = build_receipt(processed["policy"], rid)["tables"]["consents"]
    assert consents["strategy"] == "retain"
    assert consents["reason"] == CONSENT_REASON
    assert consents["rows"] == _subject_rows(processed, "consents", "1007") == 1
    assert "ge_success" not in consents and "ge_suites" not in consents
    text = _cli(processed["lake"], "receipt", rid).stdout
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("consents"))
    assert re.fullmatch(r"\s+consents\s+retained 1 row\(s\) \(GDPR Art\. 7\(1\): proof of consent\)", line), line
    assert "GE" not in line


def test_text_receipt_spells_out_each_table(processed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    rid = processed["ids"][("erase", "1007")]
    assert print_receipt(processed["policy"], rid, as_json=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"receipt for {rid} (erase, ticket T-1)"
    assert re.fullmatch(r"  status completed  received \S{19}  due \d{4}-\d\d-\d\d  attempts 1  run run-receipts",
                        lines[1]), lines[1]
    assert lines[2] == "  outcome: erased"
    by_table = {ln.split()[0]: ln for ln in lines[3:-1]}
    v = processed["versions"]
    rows = {name: _subject_rows(processed, name, "1007") for name in ("events", "orders")}
    held = processed["holding"]
    added = {name: _added_files(processed["policy"].table(name).uri, v[name] + 1) for name in ERASED_TABLES}
    assert by_table["events"].endswith(
        f"delete {rows['events']} row(s); the batch's commit v{v['events']}->v{v['events'] + 1}: "
        f"{held['events']} file(s) rewritten without the rows, {added['events']} file(s) written; GE passed")
    assert by_table["users"].endswith(
        f"anonymise 1 row(s); the batch's commit v{v['users']}->v{v['users'] + 1}: "
        f"{held['users']} file(s) rewritten with the rows masked, {added['users']} file(s) written; GE passed")
    assert f"delete {rows['orders']} row(s); the batch's commit v{v['orders']}->v{v['orders'] + 1}" \
        in by_table["orders"]
    assert by_table["orders"].endswith("; GE passed")
    assert re.fullmatch(r"  audit events: \d+ \(last hash [0-9a-f]{16}\)", lines[-1]), lines[-1]


def test_receipt_of_an_uncastable_subject_notes_it(processed: dict[str, Any]) -> None:
    rec = build_receipt(processed["policy"], processed["ids"][("erase", "x-77")])
    assert rec["outcome"] == "no data found"
    assert all(rec["tables"][name]["rows"] == 0 for name in ERASED_TABLES)
    assert "cannot be cast" in rec["tables"]["orders"]["note"] and "'user_no'" in rec["tables"]["orders"]["note"]
    assert "note" not in rec["tables"]["events"]  # user_id is a string column: x-77 is matchable there


def test_export_receipt_shows_exported_rows_at_the_version_read(processed: dict[str, Any]) -> None:
    rid = processed["ids"][("export", "1030")]
    rec = build_receipt(processed["policy"], rid)
    assert rec["status"] == "completed" and rec["outcome"] == "exported"
    assert rec["export_uri"] and Path(rec["export_uri"]).name == f"{rid}.zip"
    assert rec["package"]["format"] == "json" and rec["package"]["sealed"] is False
    assert rec["package"]["expires_at"] > rec["updated_at"]
    for name in ("events", "users", "orders", "consents"):
        assert rec["tables"][name] == {"exported_rows": _subject_rows(processed, name, "1030"),
                                       "export_version": processed["versions"][name]}, name


def test_receipt_events_are_the_requests_audit_trail(processed: dict[str, Any]) -> None:
    rec = build_receipt(processed["policy"], processed["ids"][("erase", "1003")])
    kinds = [e["event"] for e in rec["events"]]
    assert kinds[0] == "received" and kinds[1] == "claimed" and kinds[-1] == "completed"
    assert sorted(e["table"] for e in rec["events"] if e["event"] in ("table_erased", "table_retained")) == \
        ["consents", "events", "orders", "users"]
    assert [e["seq"] for e in rec["events"]] == sorted(e["seq"] for e in rec["events"])
    assert all(re.fullmatch(r"[0-9a-f]{64}", e["hash"]) for e in rec["events"])


# --- no subject id, no secret -------------------------------------------------------------------------------


def test_receipts_name_no_subject_id(processed: dict[str, Any]) -> None:
    lake = processed["lake"]
    leaks = Leaks(lakes.SUBJECTS + lakes.ERASE + lakes.EXPORT)
    for (kind, sid), rid in processed["ids"].items():
        for args in (("receipt", rid), ("receipt", rid, "--json")):
            out = _cli(lake, *args)
            assert out.returncode == 0, out.stderr
            assert rid in out.stdout
            # the scratch folder's name is not the receipt's doing (pytest numbers it): leave it out of the scan
            text = (out.stdout + out.stderr).replace(str(lake.root), "<root>")
            assert leaks.found_in(text) == [], (kind, sid, args)


def test_a_receipt_needs_no_pseudonym_key(processed: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    lake = processed["lake"]
    rid = processed["ids"][("erase", "1011")]
    with_key = _cli(lake, "receipt", rid, "--json")
    monkeypatch.delenv(lakes.KEY_ENV)
    # an auditor's environment: the policy file, and no secret
    env = {"DSR_POLICY": str(lake.policy_path)}
    without_key = _cli(lake, "receipt", rid, "--json", env=env)
    assert without_key.returncode == 0, without_key.stderr
    assert json.loads(without_key.stdout) == json.loads(with_key.stdout)
    assert json.loads(without_key.stdout)["status"] == "completed"
    text = _cli(lake, "receipt", rid, env=env)
    assert text.returncode == 0 and "GE passed" in text.stdout, text.stderr
    policy: Policy = load_policy(lake.policy_path)
    assert build_receipt(policy, rid)["tables"]["users"]["ge_success"] is True


# --- a pending request, an unknown id ------------------------------------------------------------------------


def test_a_pending_requests_receipt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    lake = lakes.busy(tmp_path / "w").use(monkeypatch)
    policy = lake.policy()
    rid, created = control.submit(policy, "erase", "1002", ticket="T-42")
    assert created
    rec = build_receipt(policy, rid)
    assert (rec["status"], rec["kind"], rec["ticket"], rec["attempts"]) == ("pending", "erase", "T-42", 0)
    assert rec["run_id"] is None and rec["outcome"] is None and rec["error"] is None and rec["export_uri"] is None
    assert rec["tables"] == {}
    assert [e["event"] for e in rec["events"]] == ["received"]
    assert print_receipt(policy, rid, as_json=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"receipt for {rid} (erase, ticket T-42)"
    assert lines[1].startswith("  status pending  received ") and lines[1].endswith("  attempts 0  run -")
    assert len(lines) == 3 and re.fullmatch(r"  audit events: 1 \(last hash [0-9a-f]{16}\)", lines[2]), lines
    assert Leaks(["1002"]).found_in("\n".join(lines)) == []


def test_an_unknown_request_id(processed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    lake = processed["lake"]
    before = lakes.files(lake.root)
    with pytest.raises(InputError, match="no request with id 'req_doesnotexist'"):
        print_receipt(processed["policy"], "req_doesnotexist", as_json=False)
    assert capsys.readouterr().out == ""
    for args in (("receipt", "req_doesnotexist"), ("receipt", "req_doesnotexist", "--json")):
        out = _cli(lake, *args)
        assert out.returncode == 2
        assert out.stdout == ""
        assert out.stderr == "dsr: error: no request with id 'req_doesnotexist'\n"
    assert lakes.files(lake.root) == before  # nothing written


def test_the_receipt_of_an_export_says_its_package_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package the purge deleted (the person's erasure was purged): the receipt says DELETED, when and why
    (its ``export_deleted`` audit event); a package removed by hand: NO LONGER THERE. Never the path alone."""
    lake = lakes.busy(tmp_path / "w").use(monkeypatch)
    lake.policy_path.write_text(lake.policy_path.read_text(encoding="utf-8") + "purge_after_hours: 0\n",
                                encoding="utf-8")
    policy = lake.policy()
    erased = control.submit(policy, "export", "1003")[0]  # then erased: the purge deletes this package
    kept = control.submit(policy, "export", "1005")[0]  # its package is removed by hand
    control.submit(policy, "erase", "1003")
    for _ in range(2):  # the erasure waits for the export of the same person
        assert _cli(lake, "run", "-q").returncode == 0
    shown = _cli(lake, "receipt", erased)
    assert shown.returncode == 0 and "DELETED" not in shown.stdout and "NO LONGER" not in shown.stdout
    assert json.loads(_cli(lake, "receipt", erased, "--json").stdout)["export_state"] == "present"

    purge = _cli(lake, "purge")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    rec = json.loads(_cli(lake, "receipt", erased, "--json").stdout)
    assert rec["export_state"] == "deleted" and rec["export_deleted"]["why"] == "erased"
    assert not Path(rec["export_uri"]).exists()
    text = _cli(lake, "receipt", erased).stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("  export:"))
    assert re.match(r"  export: DELETED \d{4}-\d\d-\d\d \d\d:\d\d UTC \(the person's erasure was purged\); it was ",
                    line), line

    package = Path(json.loads(_cli(lake, "receipt", kept, "--json").stdout)["export_uri"])
    package.unlink()
    rec = json.loads(_cli(lake, "receipt", kept, "--json").stdout)
    assert rec["export_state"] == "missing" and rec["export_deleted"] is None
    assert f"  export: NO LONGER THERE: {package}" in _cli(lake, "receipt", kept).stdout
    assert Leaks(["1003", "1005"]).found_in(text) == []


# --- a person known by identifier kinds: rows per subject column, kinds and counts, never values ------------------


def _rows_by(column: int, uid: str) -> int:
    """Rows of ``lakes.MESSAGES`` whose column (1 sender, 2 recipient) holds uid."""
    return sum(1 for m in lakes.MESSAGES if m[column] == uid)


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The people lake: an export of u1 by user id, run; then an erasure of u1 by user id and email, run."""
    lake = lakes.messages_lake(tmp_path_factory.mktemp("receipt-people") / "w")
    with pytest.MonkeyPatch.context() as mp:
        policy = lake.use(mp).policy()
        export = control.submit(policy, "export", ids=["user_id=u1"])[0]
        assert steps.run(policy, DeltaRsEngine()).exit_code == 0
        erase = control.submit(policy, "erase", ids=["user_id=u1", "email=ann@example.org"])[0]
        assert steps.run(policy, DeltaRsEngine()).exit_code == 0
        yield {"lake": lake, "policy": policy, "export": export, "erase": erase}


def test_an_erasure_receipt_counts_rows_per_subject_column_and_kind(people: dict[str, Any]) -> None:
    rec = build_receipt(people["policy"], people["erase"])
    assert rec["status"] == "completed", rec["error"]
    # no link table: the set filed is the set resolved, frozen at the claim
    assert rec["identifier_kinds"] == {"email": 1, "user_id": 1} and rec["identity_resolved"] is True
    messages = rec["tables"]["messages"]
    # the sender's rows are deleted first; the recipient column then finds the one row u1 did not send
    sent = _rows_by(1, "u1")
    only_mentioned = sum(1 for m in lakes.MESSAGES if m[2] == "u1" and m[1] != "u1")
    assert list(messages["columns"]) == ["sender_id", "recipient_id"]  # the policy's order
    assert messages["columns"] == {
        "sender_id": {"kind": "user_id", "role": "owner", "rows": sent, "matchable": True},
        "recipient_id": {"kind": "user_id", "role": "mentioned", "rows": only_mentioned, "matchable": True},
    }
    assert messages["rows"] == sent + only_mentioned
    assert rec["tables"]["contacts"]["columns"] == {
        "email": {"kind": "email", "role": "owner", "rows": 1, "matchable": True}}


def test_an_export_receipt_counts_rows_found_per_subject_column(people: dict[str, Any]) -> None:
    rec = build_receipt(people["policy"], people["export"])
    assert rec["status"] == "completed" and rec["identifier_kinds"] == {"user_id": 1}
    messages = rec["tables"]["messages"]
    assert messages["exported_rows"] == sum(1 for m in lakes.MESSAGES if "u1" in (m[1], m[2]))
    assert messages["columns"] == {  # a row found by both columns counts under each
        "sender_id": {"kind": "user_id", "exported_rows": _rows_by(1, "u1"), "matchable": True},
        "recipient_id": {"kind": "user_id", "exported_rows": _rows_by(2, "u1"), "matchable": True},
    }
    assert rec["tables"]["contacts"]["columns"] == {"email": {"kind": "email", "exported_rows": 0, "matchable": True}}


def test_the_text_receipt_shows_kinds_and_columns_and_no_identifier(people: dict[str, Any]) -> None:
    lake = people["lake"]
    leaks = Leaks(["u1", "ann@example.org", "Ann@Example.org"])
    for rid in (people["erase"], people["export"]):
        for args in (("receipt", rid), ("receipt", rid, "--json")):
            out = _cli(lake, *args)
            assert out.returncode == 0, out.stderr
            assert leaks.found_in(out.stdout.replace(str(lake.root), "<root>")) == [], args
    text = _cli(lake, "receipt", people["erase"]).stdout
    assert "  identifiers: email 1, user_id 1 (resolved through the link tables; values not shown)" in text.splitlines()
    by_column = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("by column:")]
    assert by_column == [
        f"by column: sender_id (user_id) {_rows_by(1, 'u1')} row(s); recipient_id (user_id, mentioned) 1 row(s) masked",
        "by column: email (email) 1 row(s)",
    ]
    shown = _cli(lake, "receipt", people["export"]).stdout
    assert (f"by column: sender_id (user_id) {_rows_by(1, 'u1')} row(s) found; "
            f"recipient_id (user_id) {_rows_by(2, 'u1')} row(s) found") in shown


def test_a_policy_without_identifiers_gives_one_kind_and_no_column_lines(processed: dict[str, Any],
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    rid = processed["ids"][("erase", "1007")]
    rec = build_receipt(processed["policy"], rid)
    assert rec["identifier_kinds"] == {"subject": 1}
    assert all("columns" not in t for t in rec["tables"].values())
    print_receipt(processed["policy"], rid, as_json=False)
    out = capsys.readouterr().out
    assert "identifiers:" not in out and "by column" not in out
