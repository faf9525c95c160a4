"""Which tables past erasures still owe a sweep: a table added to the policy, a changed strategy, and erasures
whose ids the purge has minimised; and the sweep on the Spark engine (Sail)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import lakes
from tests.invoke import dsr

SUBJECTS = ["a-1", "b-2", "c-3"]
NEW_TABLE = """\
  - name: clicks
    path: clicks
    subject: user_id
    erase: delete
"""


def _cli(lake: lakes.Lake, *args: str) -> Any:
    return dsr("--policy", str(lake.policy_path), *args, env=lake.env)


@pytest.fixture
def three_erased(tmp_path: Path) -> lakes.Lake:
    """The small lake after three erasures, each in its own run, and a clicks table not yet in the policy that
    holds all three people."""
    lake = lakes.small(tmp_path / "w")
    lakes.write_table(lake.lake / "events", {"user_id": SUBJECTS, "page": ["/"] * 3})
    for sid in SUBJECTS:
        assert _cli(lake, "request", "erase", sid).returncode == 0
        assert _cli(lake, "run").returncode == 0
    lakes.write_table(lake.lake / "clicks", {"user_id": [*SUBJECTS, "keep-9"], "n": [1, 2, 3, 4]})
    return lake


def test_a_table_added_after_three_erasures_is_swept_for_all_three_before_it_counts(three_erased: lakes.Lake) -> None:
    lake = three_erased
    text = lake.policy_path.read_text(encoding="utf-8")
    lake.policy_path.write_text(text.replace("  - name: consents", NEW_TABLE + "  - name: consents"), encoding="utf-8")
    check = _cli(lake, "check")
    assert check.returncode == 1 and "clicks: 3 past erasure(s) not applied" in check.stdout
    listed = _cli(lake, "requests")
    assert "table clicks: pending its first sweep (3 past erasure(s)" in listed.stdout
    assert json.loads(_cli(lake, "check", "--json").stdout)["pending_first_sweep"] == [
        {"table": "clicks", "erasures": 3}]

    incremental = _cli(lake, "sweep", "--table", "clicks", "--since-version", "0", "--json")
    t = json.loads(incremental.stdout)["tables"][0]
    assert t["mode"] == "full" and t["rows"] == 3 and t["entries_matched"] == 3  # pending: in full, whatever asked
    assert [r["user_id"] for r in lakes.rows(lake.lake / "clicks")] == ["keep-9"]
    assert _cli(lake, "check").returncode == 0
    assert "pending its first sweep" not in _cli(lake, "requests").stdout


def test_a_table_switched_from_retain_to_delete_is_pending_too(three_erased: lakes.Lake) -> None:
    lake = three_erased
    lakes.write_table(lake.lake / "consents", {"user_id": SUBJECTS, "purpose": ["mail"] * 3})
    text = lake.policy_path.read_text(encoding="utf-8")
    start = text.index("  - name: consents")
    lake.policy_path.write_text(text[:start] + "  - name: consents\n    path: consents\n    subject: user_id\n"
                                "    erase: delete\n", encoding="utf-8")
    assert "consents: 3 past erasure(s) not applied" in _cli(lake, "check").stdout
    out = _cli(lake, "sweep", "--table", "consents", "--json")
    assert json.loads(out.stdout)["tables"][0]["rows"] == 3
    assert {r["user_id"] for r in lakes.rows(lake.lake / "consents")} == {"u1"}


def test_a_purged_erasure_is_swept_by_its_digest_after_its_id_is_gone(three_erased: lakes.Lake) -> None:
    lake = three_erased
    lake.policy_path.write_text(lake.policy_path.read_text(encoding="utf-8") + "purge_after_hours: 0\n",
                                encoding="utf-8")
    purge = _cli(lake, "purge")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert "subject ids replaced by keyed digests" in purge.stdout
    lakes.write_table(lake.lake / "events", {"user_id": ["b-2", "u2"], "page": ["/replay", "/x"]})
    out = _cli(lake, "sweep", "--table", "events", "--json")
    t = json.loads(out.stdout)["tables"][0]
    assert out.returncode == 0 and t["rows"] == 1 and t["entries"] == 3
    assert "b-2" not in {r["user_id"] for r in lakes.rows(lake.lake / "events")}


@pytest.mark.spark
def test_the_spark_engine_sweeps_on_sail(three_erased: lakes.Lake, spark_remote: str) -> None:
    lake = three_erased
    lakes.write_table(lake.lake / "events", {"user_id": ["a-1", "u2", "c-3"], "page": ["/l1", "/l2", "/l3"]})
    lakes.write_table(lake.lake / "events", {"user_id": ["u2"], "page": ["/l4"]})
    out = _cli(lake, "sweep", "--table", "events", "--engine", "spark", "--remote", spark_remote, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    t = json.loads(out.stdout)["tables"][0]
    assert t["rows"] == 2 and t["entries_matched"] == 2 and t["success"]
    assert sorted(r["page"] for r in lakes.rows(lake.lake / "events")
                  if r["user_id"] in {"a-1", "c-3"}) == []
    assert sorted(r["page"] for r in lakes.rows(lake.lake / "events") if r["user_id"] == "u2") == [
        "/cart", "/l2", "/l4"]
    lakes.write_table(lake.lake / "events", {"user_id": ["b-2", "u2"], "page": ["/l5", "/l6"]})
    again = json.loads(_cli(lake, "sweep", "--table", "events", "--engine", "spark", "--remote", spark_remote,
                            "--json").stdout)["tables"][0]
    assert (again["mode"], again["files_scanned"], again["rows"]) == ("incremental", 1, 1)  # the new file, as parquet
    assert "b-2" not in {r["user_id"] for r in lakes.rows(lake.lake / "events")}


def test_the_files_a_sweep_removed_are_purged_like_an_erasure_s(three_erased: lakes.Lake) -> None:
    """A sweep's commit removes files holding the swept rows: time travel reads them until the purge, which
    takes the sweep like an erasure (its window, its versions) and records it under the sweep id."""
    from tests import bytescan

    lake = three_erased
    lake.policy_path.write_text(lake.policy_path.read_text(encoding="utf-8") + "purge_after_hours: 0\n",
                                encoding="utf-8")
    assert _cli(lake, "purge").returncode == 0
    lakes.write_table(lake.lake / "events", {"user_id": ["c-3", "u2"], "page": ["/replayed", "/x"]})
    swept = json.loads(_cli(lake, "sweep", "--table", "events", "--json").stdout)
    assert swept["tables"][0]["rows"] == 1
    events = lake.lake / "events"
    assert bytescan.scan([events], ["c-3"])[f"{events}: parquet values"] > 0  # the removed file, still there
    purge = _cli(lake, "purge", "--json")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    tables = {t["table"]: t for t in json.loads(purge.stdout)["tables"]}
    assert tables["events"]["requests"] == [swept["sweep_id"]] and tables["events"]["data_files_removed"] >= 1
    assert bytescan.scan([events], ["c-3"]) == {}


def test_the_next_dsr_run_sweeps_a_table_added_to_the_policy(three_erased: lakes.Lake) -> None:
    lake = three_erased
    text = lake.policy_path.read_text(encoding="utf-8")
    lake.policy_path.write_text(text.replace("  - name: consents", NEW_TABLE + "  - name: consents"), encoding="utf-8")
    run = _cli(lake, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "first sweep swp_" in run.stdout and "of clicks: 3 row(s) of past erasures erased" in run.stdout
    assert [r["user_id"] for r in lakes.rows(lake.lake / "clicks")] == ["keep-9"]
    assert _cli(lake, "check").returncode == 0


@pytest.mark.spark
def test_the_spark_engine_sweeps_a_table_partitioned_by_the_subject(three_erased: lakes.Lake, spark_remote: str
                                                                   ) -> None:
    """First in full (the table joined the policy later), then incrementally: the new files' partition values
    come from the log, no file is read for them."""
    lake = three_erased
    visits = lake.lake / "visits"
    lakes.write_table(visits, {"user_id": ["a-1", "keep-9"], "n": [5, 6]}, partition_by=["user_id"])
    text = lake.policy_path.read_text(encoding="utf-8")
    lake.policy_path.write_text(text.replace("  - name: consents", NEW_TABLE.replace("clicks", "visits")
                                             + "  - name: consents"), encoding="utf-8")
    spark = ("--engine", "spark", "--remote", spark_remote)
    first = json.loads(_cli(lake, "sweep", "--table", "visits", *spark, "--json").stdout)["tables"][0]
    assert (first["mode"], first["rows"]) == ("full", 1)
    lakes.write_table(visits, {"user_id": ["c-3", "keep-9", "c-3"], "n": [7, 8, 9]}, partition_by=["user_id"])
    out = _cli(lake, "sweep", "--table", "visits", *spark, "--json")
    again = json.loads(out.stdout)["tables"][0]
    assert (again["mode"], again["rows"], again["success"]) == ("incremental", 2, True), out.stdout + out.stderr
    assert sorted(r["n"] for r in lakes.rows(visits)) == [6, 8]
