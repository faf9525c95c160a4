"""dsr/steps/sweep.py (``dsr sweep``): past erasures applied again to rows that came back.

Every expectation is read back with deltalake directly (``tests/lakes.py``), and masked values come from
``tests/expect.py``'s independent implementation of README's rules, never from the code under test.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dsr.core import audit
from tests import expect, lakes
from tests.invoke import dsr

USER_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False), pa.field("email", pa.string()),
    pa.field("full_name", pa.string()), pa.field("birth_date", pa.date32()), pa.field("last_ip", pa.string()),
    pa.field("password_hash", pa.string()),
])


def _cli(lake: lakes.Lake, *args: str) -> Any:
    return dsr("--policy", str(lake.policy_path), *args, env=lake.env)


def _user(uid: str, n: int) -> dict[str, Any]:
    return {"user_id": uid, "email": f"{uid}.{n}@example.org", "full_name": f"Late {n}", "birth_date": None,
            "last_ip": "10.9.8.7", "password_hash": f"h{n}"}


@pytest.fixture
def erased(tmp_path: Path) -> lakes.Lake:
    """The small lake after a run that erased u1 (events: delete; users: anonymise)."""
    lake = lakes.small(tmp_path / "w")
    assert _cli(lake, "request", "erase", "u1").returncode == 0
    run = _cli(lake, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    return lake


def _late_rows(lake: lakes.Lake) -> None:
    """An ingestion job appends rows of u1 (erased) and u2 (not) to both tables."""
    lakes.write_table(lake.lake / "events", {"user_id": ["u1", "u2", "u1"], "page": ["/late", "/x", "/again"]})
    lakes.write_table(lake.lake / "users", pa.Table.from_pylist([_user("u1", 7)], schema=USER_SCHEMA))


def test_rows_appended_after_the_erasure_are_erased_again_with_the_same_masks(erased: lakes.Lake) -> None:
    before = {t: lakes.snapshot(erased.lake / t) for t in ("events", "users")}
    _late_rows(erased)
    out = _cli(erased, "sweep", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    report = {t["table"]: t for t in json.loads(out.stdout)["tables"]}
    assert report["events"]["rows"] == 2 and report["users"]["rows"] == 1
    assert all(t["success"] and t["entries_matched"] == 1 for t in report.values())
    events = lakes.snapshot(erased.lake / "events")
    assert events == sorted(before["events"] + [{"user_id": "u2", "page": "/x"}], key=lambda r: repr(sorted(r.items())))
    users = lakes.rows(erased.lake / "users")
    late = [r for r in users if r["password_hash"] == "h7"]
    pseudonym = expect.pseudonym(lakes.KEY, "u1", "string")
    assert late == [{"user_id": pseudonym, "email": None, "full_name": "[erased]", "birth_date": None,
                     "last_ip": "10.9.8.0", "password_hash": "h7"}]
    assert next(r for r in users if r["password_hash"] == "h1")["user_id"] == pseudonym  # the run's own pseudonym
    assert [r for r in users if r["user_id"] == "u2"] == [r for r in before["users"] if r["user_id"] == "u2"]


def test_the_sweep_is_recorded_and_has_a_receipt(erased: lakes.Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    _late_rows(erased)
    out = _cli(erased, "sweep")
    assert out.returncode == 0, out.stdout
    sweep_id = next(w.rstrip(":") for w in out.stdout.split() if w.startswith("swp_"))
    policy = erased.use(monkeypatch).policy()
    events = [e for e in audit.events(policy) if e["request_id"] == sweep_id]
    assert sorted(e["table_name"] for e in events) == ["events", "users"]
    assert all(e["event"] == "table_swept" and e["details"]["success"] for e in events)
    details = {e["table_name"]: e["details"] for e in events}
    assert details["events"]["version_after"] == details["events"]["version_before"] + 1
    assert details["events"]["rows"] == 2 and details["events"]["entries"] == 1
    receipt = _cli(erased, "receipt", sweep_id)
    assert receipt.returncode == 0 and "events" in receipt.stdout and "GE passed" in receipt.stdout
    assert "u1" not in out.stdout + receipt.stdout + json.dumps([e["details"] for e in events])
    assert audit.verify_chain(policy)[1] is None


def test_an_incremental_sweep_reads_only_the_new_files(erased: lakes.Lake) -> None:
    first = _cli(erased, "sweep", "--json")
    assert first.returncode == 0
    assert {t["mode"] for t in json.loads(first.stdout)["tables"]} == {"full"}  # never swept before
    for i in range(3):
        lakes.write_table(erased.lake / "events", {"user_id": ["u1" if i == 1 else "u2"], "page": [f"/p{i}"]})
    live = len(DeltaTable(str(erased.lake / "events")).file_uris())
    out = _cli(erased, "sweep", "--table", "events", "--json")
    t = json.loads(out.stdout)["tables"][0]
    assert (t["mode"], t["files_scanned"], t["files_live"], t["files_matched"]) == ("incremental", 3, live, 1)
    assert live > 3 and t["rows"] == 1
    again = json.loads(_cli(erased, "sweep", "--table", "events", "--json").stdout)["tables"][0]
    assert (again["files_scanned"], again["rows"]) == (0, 0)  # its own rewrite counts as checked


def test_a_dry_run_changes_no_file(erased: lakes.Lake) -> None:
    _late_rows(erased)
    before = lakes.files(erased.root)
    out = _cli(erased, "sweep", "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "would delete 2 row(s)" in out.stdout and "would anonymise 1 row(s)" in out.stdout
    assert lakes.files(erased.root) == before


def test_a_bad_or_retained_table_names_the_option_and_offers_only_sweepable_tables(erased: lakes.Lake) -> None:
    before = lakes.files(erased.root)
    for name, why in (("nope", "no such table in the policy"), ("consents", "retained by policy")):
        out = _cli(erased, "sweep", "--table", name)
        assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
        assert out.stderr == (f"dsr: error: --table {name!r}: {why}"
                              + (", a sweep never changes it" if name == "consents" else "")
                              + " (tables that can be swept: events, users)\n"), out.stderr
    assert lakes.files(erased.root) == before


def test_the_dry_run_and_the_sweep_end_with_the_total_line_the_backfill_dag_logs(erased: lakes.Lake) -> None:
    _late_rows(erased)
    dry = _cli(erased, "sweep", "--dry-run").stdout.splitlines()
    assert dry[-1] == "sweep (dry run): 3 row(s) would change in 2 table(s); nothing was written", dry
    done = _cli(erased, "sweep").stdout.splitlines()
    sweep_id = json.loads(_cli(erased, "sweep", "--json").stdout)["sweep_id"]
    assert done[-1].endswith(" row(s) changed in 2 table(s); dsr receipt " + done[-1].split()[1].rstrip(":"))
    assert done[-1].startswith("sweep swp_") and sweep_id.startswith("swp_")


def test_a_table_restored_to_before_the_erasure_is_cleaned(erased: lakes.Lake) -> None:
    events = erased.lake / "events"
    assert _cli(erased, "sweep").returncode == 0
    kept = lakes.snapshot(events)
    DeltaTable(str(events)).restore(0)  # RESTORE to the version before the erase commit
    assert "u1" in {r["user_id"] for r in lakes.rows(events)}
    out = _cli(erased, "sweep", "--table", "events", "--json")
    t = json.loads(out.stdout)["tables"][0]
    assert out.returncode == 0 and t["mode"] == "incremental" and t["rows"] == 1
    assert lakes.snapshot(events) == kept


def test_files_copied_back_from_a_backup_are_cleaned(erased: lakes.Lake, tmp_path: Path) -> None:
    events = erased.lake / "events"
    backup = tmp_path / "backup"
    shutil.copytree(events, backup)  # after the erasure; the data from before it, reloaded from raw files:
    old = pa.table(DeltaTable(str(events), version=0).to_pyarrow_table())
    lakes.write_table(events, old)
    out = _cli(erased, "sweep", "--table", "events", "--json")
    t = json.loads(out.stdout)["tables"][0]
    assert t["rows"] == 1
    assert Counter(r["user_id"] for r in lakes.rows(events)) == Counter({"u2": 2, None: 2})


def test_since_version_and_since_time_choose_the_files(erased: lakes.Lake) -> None:
    assert _cli(erased, "sweep").returncode == 0
    lakes.write_table(erased.lake / "events", {"user_id": ["u2"], "page": ["/n"]})
    by_version = json.loads(_cli(erased, "sweep", "--table", "events", "--since-version", "0", "--dry-run",
                                 "--json").stdout)["tables"][0]
    assert by_version["mode"] == "since" and by_version["since_version"] == 0
    assert by_version["files_scanned"] == len(DeltaTable(str(erased.lake / "events")).file_uris())
    by_time = json.loads(_cli(erased, "sweep", "--table", "events", "--since", "2020-01-01", "--dry-run",
                              "--json").stdout)["tables"][0]
    assert by_time["mode"] == "full"  # before the table existed: every file


def test_an_integer_subject_column_is_matched_by_its_canonical_number(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    lake = lakes.busy(tmp_path / "w")
    policy = lake.use(monkeypatch).policy()
    lakes.file_requests(policy)
    assert _cli(lake, "run").returncode == 0
    orders = policy.table("orders").uri
    lakes.write_table(orders, pa.table({
        "order_id": ["late1", "late2"], "user_no": pa.array([1007, 1005], pa.int64()),
        "amount": pa.array([1, 2], pa.decimal128(10, 2)),
        "ordered_at": pa.array([None, None], pa.timestamp("us", tz="UTC"))}))
    out = _cli(lake, "sweep", "--table", "orders", "--json")
    t = json.loads(out.stdout)["tables"][0]
    assert t["rows"] == 1 and t["entries_matched"] == 1
    assert sorted(r["order_id"] for r in lakes.rows(orders) if r["order_id"].startswith("late")) == ["late2"]


def test_the_suppression_list_holds_no_raw_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import bytescan

    lake = lakes.busy(tmp_path / "w")
    policy = lake.use(monkeypatch).policy()
    lakes.file_requests(policy)
    assert _cli(lake, "run").returncode == 0
    place = Path(policy.control_uri) / "suppression"
    rows = lakes.rows(place)
    assert len(rows) == len(lakes.ERASE) and all(r["digest_text"] for r in rows)
    ints = {int(s) for s in lakes.ERASE if s.isdigit()}
    assert bytescan.scan([place], lakes.ERASE, {"digest_int": ints, "digest_text": ints}) == Counter()
    assert sum(r["digest_int"] is not None for r in rows) == len(ints)  # x-77 is no integer


def test_a_sweep_with_another_key_refuses_instead_of_matching_nobody(erased: lakes.Lake) -> None:
    out = dsr("--policy", str(erased.policy_path), "sweep", env={**erased.env, lakes.KEY_ENV: "x" * 32})
    assert out.returncode == 2 and "another key" in out.stderr and out.stdout == ""
