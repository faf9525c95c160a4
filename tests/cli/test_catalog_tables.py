"""Issue 22, item 3, end to end on Sail: a policy table named in the Spark catalog (``table: sail.<db>.users``)
whose location lies outside the lake. ``dsr check`` lists it, ``dsr run --engine spark --remote`` exports from it
and erases at that location, verify, sweep, residue and purge find it there; dsr writes nowhere but the lake, the
exports and that location. A name the catalog cannot resolve is one line, exit 2, nothing written.

The server is Sail with its Glue catalog on moto (``spark_catalog_remote``): Sail's default catalog keeps a
table for one session only, and each ``dsr`` command opens its own.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from tests import expect, lakes
from tests.invoke import dsr
from tests.packages import tables as package_tables

pytestmark = pytest.mark.spark


def _register(remote: str, db: str, statements: list[str]) -> None:
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(remote).create()
    try:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}").collect()
        for statement in statements:
            spark.sql(statement).collect()
    finally:
        spark.stop()


def _lake(root: Path, remote: str) -> tuple[lakes.Lake, Path, str]:
    """The small lake with ``users`` moved out of the lake into a warehouse folder and registered in the
    catalog as ``sail.<db>.users``; the policy names it so, and purges at once."""
    lake = lakes.small(root)
    outside = root / "warehouse" / "crm.db" / "users"
    outside.parent.mkdir(parents=True)
    shutil.move(lake.lake / "users", outside)
    db = f"crm_{uuid.uuid4().hex[:8]}"
    _register(remote, db, [f"CREATE TABLE {db}.users USING delta LOCATION '{outside}'"])
    text = lake.policy_path.read_text(encoding="utf-8")
    lake.policy_path.write_text(text.replace("    path: users\n", f"    table: sail.{db}.users\n", 1)
                                + "purge_after_hours: 0\n", encoding="utf-8")
    return lake, outside, db


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def test_a_catalog_table_outside_the_lake_is_checked_exported_erased_and_purged_there(
    tmp_path: Path, spark_catalog_remote: str
) -> None:
    remote = spark_catalog_remote
    lake, outside, db = _lake(tmp_path / "w", remote)
    env = lake.env
    before = lakes.files(tmp_path)

    checked = dsr("check", "--remote", remote, env=env)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    assert f"users: sail.{db}.users at {outside}  (outside the lake)" in checked.stdout
    as_json = json.loads(dsr("check", "--remote", remote, "--json", env=env).stdout)
    assert as_json["catalog_tables"] == [{"table": "users", "catalog": f"sail.{db}.users", "location": str(outside),
                                          "outside_lake": True}]
    assert as_json["uncovered"] == [] and as_json["ok"]

    erase = dsr("request", "erase", "u1", env=env).stdout.strip()
    export = dsr("request", "export", "u2", env=env).stdout.strip()
    ran = dsr("run", "--engine", "spark", "--remote", remote, "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["engine"] == "spark" and report["summary"]["completed"] == 2, report

    users = {r["full_name"]: r for r in lakes.rows(outside)}  # read at the location, by deltalake itself
    assert users["[erased]"]["user_id"] == expect.pseudonym(lakes.KEY, "u1")
    assert users["[erased]"]["email"] is None and users["Bob"]["email"] == "b@example.org"
    assert [r["user_id"] for r in lakes.rows(lake.lake / "events") if r["user_id"]] == ["u2"]
    assert not (lake.lake / "users").exists()
    exported = package_tables(str(lake.exports / f"{export}.zip"))
    assert [r["email"] for r in exported["users"]] == ["b@example.org"]

    assert dsr("verify", "--remote", remote, env=env).returncode == 0
    swept = dsr("sweep", "--full", "--remote", remote, "--json", env=env)
    assert swept.returncode == 0, swept.stderr
    assert {t["table"]: t["rows"] for t in json.loads(swept.stdout)["tables"]}["users"] == 0
    left = dsr("residue", erase, "--remote", remote, "--json", env=env)
    assert left.returncode == 1 and json.loads(left.stdout)["requests"][0]["tables"]["users"], left.stdout
    purged = dsr("purge", "--remote", remote, env=env)
    assert purged.returncode == 0, purged.stderr + purged.stdout
    assert dsr("residue", "--remote", remote, env=env).returncode == 0
    assert dsr("audit", "verify", env=env).returncode == 0

    places = (lake.lake, lake.exports, outside)
    stray = sorted(p for p in _changed(before, lakes.files(tmp_path))
                   if not any(Path(p).is_relative_to(place) for place in places))
    assert stray == [], stray  # invariant 9: the lake, the exports and the catalog table's location only


@pytest.mark.parametrize(("table", "why"), [
    ("nosuch", "cannot describe table"),
    ("flat", "not a Delta table"),
    ("v", "is a view"),
])
def test_a_name_the_catalog_cannot_resolve_to_a_delta_table_is_one_line_and_writes_nothing(
    tmp_path: Path, spark_catalog_remote: str, table: str, why: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    lake, _, db = _lake(tmp_path / "w", spark_catalog_remote)
    (tmp_path / "flat").mkdir()
    pq.write_table(pa.table({"user_id": ["u1"]}), tmp_path / "flat" / "part-0.parquet")
    _register(spark_catalog_remote, db, [f"CREATE TABLE {db}.flat USING parquet LOCATION '{tmp_path / 'flat'}'",
                                         f"CREATE VIEW {db}.v AS SELECT 'u1' AS user_id"])
    text = lake.policy_path.read_text(encoding="utf-8").replace(f"{db}.users", f"{db}.{table}")
    lake.policy_path.write_text(text, encoding="utf-8")
    assert dsr("request", "erase", "u1", env=lake.env).returncode == 0
    before = lakes.files(tmp_path)

    for argv in (["check", "--remote", spark_catalog_remote], ["run", "--remote", spark_catalog_remote]):
        proc = dsr(*argv, env=lake.env)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, (argv, proc.stderr, proc.stdout)
        assert len(lines) == 1 and why in lines[0] and f"{db}.{table}" in lines[0], lines
        assert "u1" not in proc.stderr
    assert lakes.files(tmp_path) == before
