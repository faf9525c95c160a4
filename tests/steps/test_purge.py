"""dsr/steps/purge.py and dsr/delta/maintenance.py: after a purge nothing of the erased people is on disk in their
tables, every other row is unchanged, and versions from the erase commit on still read.

The proof is an independent scan written here with plain pyarrow and json: every parquet file under each table
(subject column), every log entry and checkpoint (statistics and partition values), every directory name.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, QueryBuilder

from dsr import steps
from dsr.core import audit, control
from dsr.delta import maintenance
from dsr.engines.deltars import DeltaRsEngine
from dsr.steps import purge as purging
from tests import bytescan, lakes
from tests import real_tables as rt
from tests.invoke import dsr

ERASED_INTS = {int(s) for s in lakes.ERASE if s.isdigit()}


def _on_disk(table: Path, column: str, wanted: set[Any]) -> Counter[str]:
    """Where values of ``wanted`` are under the table, read with plain pyarrow and json (not dsr)."""
    return bytescan.column_places(table, {column}, wanted)


@pytest.fixture
def purged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The busy lake with ``purge_after_hours: 0``: run, then purge."""
    lake = lakes.busy(tmp_path / "w")
    lake.policy_path.write_text(lake.policy_path.read_text() + "purge_after_hours: 0\n", encoding="utf-8")
    policy = lake.use(monkeypatch).policy()
    before = {t.name: lakes.rows(t.uri) for t in policy.tables}
    ids = lakes.file_requests(policy)
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    after_run = {t.name: lakes.rows(t.uri) for t in policy.tables}
    versions = {t.name: lakes.version(t.uri) for t in policy.tables}
    residue_before = {t.name: _on_disk(Path(t.uri), t.subject, _wanted(t.subject)) for t in policy.tables}
    report = purging.purge(policy)
    return {"lake": lake, "policy": policy, "before": before, "after_run": after_run, "versions": versions,
            "residue_before": residue_before, "report": report, "ids": ids}


def _digest(subject_id: str) -> str:
    """README: ``sbj_`` + 32 hex digits of HMAC-SHA256 of ``dsr-lake/subject/v1:`` + the id, with the key."""
    message = f"dsr-lake/subject/v1:{subject_id}".encode()
    return "sbj_" + hmac.new(lakes.KEY.encode(), message, "sha256").hexdigest()[:32]


def _wanted(column: str) -> set[Any]:
    return ERASED_INTS if column == "user_no" else set(lakes.ERASE)


def test_before_the_purge_the_removed_files_held_the_erased_rows(purged: dict[str, Any]) -> None:
    assert purged["residue_before"]["events"]["data"] > 0 and purged["residue_before"]["orders"]["data"] > 0


def test_after_the_purge_no_byte_of_a_purged_table_names_an_erased_subject(purged: dict[str, Any]) -> None:
    report = purged["report"]
    assert report.exit_code == 0, report.as_dict()
    assert {t.table for t in report.tables} == {"events", "users", "orders"}  # consents is retained
    for t in purged["policy"].tables:
        found = _on_disk(Path(t.uri), t.subject, _wanted(t.subject))
        if t.name == "consents":
            assert found["data"] > 0  # retained by policy, never touched
            continue
        assert found == Counter(), (t.name, found)
    assert all(t.residue == 0 for t in report.tables)


def test_every_other_row_is_unchanged_and_the_erase_versions_still_read(purged: dict[str, Any]) -> None:
    for t in purged["policy"].tables:
        assert Counter(map(repr, lakes.rows(t.uri))) == Counter(map(repr, purged["after_run"][t.name])), t.name
        assert lakes.version(t.uri) >= purged["versions"][t.name]
    for t in purged["report"].tables:
        table = purged["policy"].table(t.table)
        assert lakes.rows(table.uri, t.version)  # the oldest readable version reads
        with pytest.raises(Exception):  # noqa: B017 - delta-rs raises its own error types
            DeltaTable(table.uri, version=t.version - 1)


def test_each_purged_request_has_a_table_purged_event_and_the_chain_holds(purged: dict[str, Any]) -> None:
    policy = purged["policy"]
    rid = purged["ids"][("erase", "1007")]
    events = [e for e in audit.events(policy, request_id=rid) if e["event"] == "table_purged"]
    assert sorted(e["table_name"] for e in events) == ["events", "orders", "users"]
    for e in events:
        assert e["details"]["data_files_removed"] >= 1 and e["details"]["bytes_removed"] > 0
    assert audit.verify_chain(policy)[1] is None
    again = purging.purge(policy)
    assert again.tables == [] and again.exit_code == 0  # purged once: never again


def test_dsr_verify_still_passes_after_the_purge(purged: dict[str, Any]) -> None:
    lake: lakes.Lake = purged["lake"]
    out = dsr("--policy", str(lake.policy_path), "verify", env=lake.env)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dry_run_writes_nothing_and_the_window_is_respected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = lakes.busy(tmp_path / "w")
    policy = lake.use(monkeypatch).policy()
    lakes.file_requests(policy)
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    before = lakes.files(lake.lake, lake.exports)
    waiting = dsr("--policy", str(lake.policy_path), "purge", env=lake.env)  # default window: 168 hours
    assert waiting.returncode == 0 and "no erasure is due" in waiting.stdout and "next purge due" in waiting.stdout
    listed = dsr("--policy", str(lake.policy_path), "requests", env=lake.env)
    assert listed.stdout.count("purge due") == len(lakes.ERASE) and "PURGE OVERDUE" not in listed.stdout
    assert lakes.files(lake.lake, lake.exports) == before
    lake.policy_path.write_text(lake.policy_path.read_text() + "purge_after_hours: 0\n", encoding="utf-8")
    dry = dsr("--policy", str(lake.policy_path), "purge", "--dry-run", "--json", env=lake.env)
    assert dry.returncode == 0, dry.stderr
    tables = {t["table"]: t for t in json.loads(dry.stdout)["tables"]}
    assert set(tables) == {"events", "users", "orders"}
    assert tables["events"]["data_files_removed"] > 0 and tables["events"]["unreadable_versions"].startswith("0..")
    assert lakes.files(lake.lake, lake.exports) == before


def test_a_table_partitioned_by_the_subject_loses_the_persons_directory(tmp_path: Path) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a1", "b2", "a1"], "n": [1, 2, 3]}, partition_by=["user_id"])
    DeltaTable(str(path)).delete("user_id = 'a1'")
    erase_version = lakes.version(path)
    assert (path / "user_id=a1").is_dir()
    done = maintenance.purge_through(str(path), erase_version)
    assert not (path / "user_id=a1").exists()
    assert _on_disk(path, "user_id", {"a1"}) == Counter()
    assert [r["user_id"] for r in lakes.rows(path)] == ["b2"] and done.version == erase_version


def test_a_partition_value_that_needs_escaping_leaves_no_tombstone(tmp_path: Path) -> None:
    """delta-rs writes the path ``user_id=a%20b%25c`` into the log escaped once more; the checkpoint's tombstone of
    the purged file must still be recognised and dropped (it carries the partition value)."""
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a b%c", "zz", "a b%c"], "n": [1, 2, 3]},
                             partition_by=["user_id"])
    DeltaTable(str(path)).delete("user_id = 'a b%c'")
    maintenance.purge_through(str(path), lakes.version(path))
    assert _on_disk(path, "user_id", {"a b%c"}) == Counter()
    assert [r["user_id"] for r in lakes.rows(path)] == ["zz"]


def test_rows_behind_deletion_vectors_are_rewritten_away(tmp_path: Path) -> None:
    path = Path(shutil.copytree(rt.VENDORED / "log-replay-dv-key-cases", tmp_path / "dv"))
    column = pq.read_schema(next(path.glob("*.parquet"))).names[0]
    visible = sorted(pa.table(QueryBuilder().register("t", DeltaTable(str(path))).execute(
        "SELECT * FROM t").read_all()).column(column).to_pylist())
    raw = [v for f in path.glob("*.parquet") for v in pq.read_table(f).column(column).to_pylist()]
    masked = {v for v in raw if v not in visible}
    assert masked
    done = maintenance.purge_through(str(path), lakes.version(path))
    assert done.dv_files and done.version > 3
    assert _on_disk(path, column, masked) == Counter()
    assert sorted(r[column] for r in lakes.rows(path)) == visible


@pytest.mark.spark
def test_purged_tables_still_read_on_sail(purged: dict[str, Any], spark_connect: Any) -> None:
    for t in purged["report"].tables:
        uri = purged["policy"].table(t.table).uri
        assert spark_connect.read.format("delta").load(uri).count() == len(lakes.rows(uri)), t.table


def test_the_control_table_keeps_digests_not_the_purged_ids(purged: dict[str, Any]) -> None:
    policy = purged["policy"]
    report = purged["report"]
    assert report.minimised["requests"] == len(lakes.ERASE) and report.minimised["control_residue"] == 0
    assert _on_disk(Path(policy.requests_uri), "subject_id", set(lakes.ERASE)) == Counter()
    kept = sorted((r.kind, r.subject_id) for r in control.list_requests(policy))
    # the erasures, and the export of 1003 (exported, then erased), keep digests; other exports their ids
    assert kept == sorted([("erase", _digest(s)) for s in lakes.ERASE]
                          + [("export", _digest("1003")), ("export", "1005"), ("export", "1030")])
    assert report.own_residue["control table"] == 0
    lake: lakes.Lake = purged["lake"]
    scan = dsr("--policy", str(lake.policy_path), "residue", env=lake.env)
    assert scan.returncode == 0 and "no completed erasure to scan" in scan.stdout
    named = dsr("--policy", str(lake.policy_path), "residue", purged["ids"][("erase", "1007")], env=lake.env)
    assert named.returncode == 2 and "minimised" in named.stderr


def test_purge_needs_the_key_and_refuses_before_writing_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    lake = lakes.busy(tmp_path / "w")
    lake.policy_path.write_text(lake.policy_path.read_text() + "purge_after_hours: 0\n", encoding="utf-8")
    policy = lake.use(monkeypatch).policy()
    lakes.file_requests(policy)
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    before = lakes.files(lake.lake)
    env = {k: v for k, v in lake.env.items() if k != lakes.KEY_ENV}
    monkeypatch.delenv(lakes.KEY_ENV)
    out = dsr("--policy", str(lake.policy_path), "purge", env=env)
    assert out.returncode == 2 and lakes.KEY_ENV in out.stderr and out.stdout == ""
    assert lakes.files(lake.lake) == before
    dry = dsr("--policy", str(lake.policy_path), "purge", "--dry-run", env=env)
    assert dry.returncode == 0 and "would become unreadable" in dry.stdout


def test_the_export_of_an_erased_person_goes_with_the_purge(purged: dict[str, Any]) -> None:
    policy = purged["policy"]
    report = purged["report"]
    assert report.exports == {"erased": 1, "expired": 0}  # 1003 was exported, then erased
    assert report.own_residue == {"control table": 0, "audit table": 0, "exports": 0}
    docs = {p.name for p in Path(policy.exports).glob("*.zip")}
    assert docs == {f"{purged['ids'][('export', s)]}.zip" for s in ("1005", "1030")}
    why = [e["details"]["why"] for e in audit.events(policy, request_id=purged["ids"][("export", "1003")])
           if e["event"] == "export_deleted"]
    assert why == ["erased"]


def test_documents_older_than_the_export_ttl_are_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = lakes.small(tmp_path)
    policy = lake.use(monkeypatch).policy()
    lake.exports.mkdir()
    old, new = lake.exports / "req_00000000000000aa.json", lake.exports / "req_00000000000000bb.json"
    old.write_text(json.dumps({"request_id": old.stem, "exported_at": "2026-01-01T00:00:00Z"}), encoding="utf-8")
    new.write_text(json.dumps({"request_id": new.stem, "exported_at": "2026-11-20T00:00:00Z"}), encoding="utf-8")
    old_zip, new_sealed = lake.exports / "req_00000000000000cc.zip", lake.exports / "req_00000000000000dd.zip.sealed"
    for package, day in ((old_zip, dt.datetime(2026, 10, 1, tzinfo=dt.UTC)),
                         (new_sealed, dt.datetime(2026, 11, 25, tzinfo=dt.UTC))):
        package.write_bytes(b"PK")  # a package's age is its file's modification time
        os.utime(package, (day.timestamp(), day.timestamp()))
    now = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)  # export_ttl_days: 30 by default
    dry = purging.purge(policy, dry_run=True, now=now)
    assert dry.exports == {"erased": 0, "expired": 2} and old.exists() and old_zip.exists()
    done = purging.purge(policy, now=now)
    assert done.exports == {"erased": 0, "expired": 2}
    assert not old.exists() and new.exists() and not old_zip.exists() and new_sealed.exists()
    assert [e["event"] for e in audit.events(policy, request_id=old.stem)] == ["export_deleted"]
    assert [e["event"] for e in audit.events(policy, request_id="req_00000000000000cc")] == ["export_deleted"]


def test_dsr_requests_shows_each_erasure_purged(purged: dict[str, Any]) -> None:
    lake: lakes.Lake = purged["lake"]
    out = dsr("--policy", str(lake.policy_path), "requests", "--json", env=lake.env)
    states = {r["request_id"]: (r["kind"], (r["purge"] or {}).get("state")) for r in json.loads(out.stdout)}
    assert states == {rid: (kind, "purged" if kind == "erase" else None) for (kind, _), rid in purged["ids"].items()}


def test_a_table_the_erasure_found_nobody_in_keeps_its_history_unless_the_person_is_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No erase commit in a table: its files are searched first. events never held u9: untouched. users held
    u9 until an earlier delete by someone else: time travel still reads the row, so its history goes."""
    lake = lakes.small(tmp_path)
    lake.policy_path.write_text(lake.policy_path.read_text() + "purge_after_hours: 0\n", encoding="utf-8")
    policy = lake.use(monkeypatch).policy()
    users = policy.table("users").uri
    lakes.write_table(users, {"user_id": ["u9"], "email": ["u9@example.org"], "full_name": ["Nine"],
                              "birth_date": [dt.date(1990, 1, 1)], "last_ip": ["10.9.9.9"], "password_hash": ["h9"]},
                      schema=pa.schema(pq.read_schema(next(Path(users).glob("*.parquet")))))
    DeltaTable(users).delete("user_id = 'u9'")  # deleted by another job: still in version 1
    control.submit(policy, "erase", "u9")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    events_before = lakes.files(Path(policy.table("events").uri))
    report = purging.purge(policy)
    assert report.exit_code == 0, report.as_dict()
    by_table = {t.table: t for t in report.tables}
    assert by_table["events"].version is None and by_table["events"].removed == {"unreadable_versions": "none"}
    assert lakes.files(Path(policy.table("events").uri)) == events_before
    assert by_table["users"].version == 2 and by_table["users"].removed["unreadable_versions"] == "0..1"
    assert _on_disk(Path(users), "user_id", {"u9"}) == Counter()


def test_the_receipt_and_the_listing_show_the_purge_s_residue_scan(purged: dict[str, Any]) -> None:
    lake: lakes.Lake = purged["lake"]
    rid = purged["ids"][("erase", "1007")]
    rec = json.loads(dsr("--policy", str(lake.policy_path), "receipt", rid, "--json", env=lake.env).stdout)
    assert {name: t.get("residue") for name, t in rec["tables"].items()} == {
        "events": 0, "users": 0, "orders": 0, "consents": "retained"}
    assert rec["own_residue"] == {"control table": 0, "audit table": 0, "exports": 0}
    text = dsr("--policy", str(lake.policy_path), "receipt", rid, env=lake.env).stdout
    assert [line.split()[0] for line in text.splitlines() if "residue: 0" in line] == ["events", "users", "orders"]
    assert "residue elsewhere" in text
    listing = dsr("--policy", str(lake.policy_path), "requests", env=lake.env).stdout
    assert listing.count(", residue 0") == len(lakes.ERASE)
    scans = [e for e in audit.events(purged["policy"], request_id=rid) if e["event"] == "residue_scanned"]
    # the scan with the raw id (before the digest), then the whole result with the control table's check
    assert [bool(s["details"].get("partial")) for s in scans] == [True, False]
    assert scans[-1]["details"]["total"] == 0 and scans[-1]["details"]["own"]["control table"] == 0


def test_a_purge_with_another_key_than_the_suppression_list_s_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: the control table would be digested with the wrong key (a sweep with that key refused)."""
    lake = lakes.small(tmp_path / "w")
    lake.policy_path.write_text(lake.policy_path.read_text() + "purge_after_hours: 0\n", encoding="utf-8")
    policy = lake.use(monkeypatch).policy()
    control.submit(policy, "erase", "u1")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0  # the completion added u1's suppression entry
    before = lakes.files(lake.lake)
    out = dsr("--policy", str(lake.policy_path), "purge", env={**lake.env, lakes.KEY_ENV: "another-key-0123456789"})
    assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and "suppression list" in out.stderr and lakes.KEY_ENV in out.stderr
    assert lakes.files(lake.lake) == before
    assert dsr("--policy", str(lake.policy_path), "purge", env=lake.env).returncode == 0
