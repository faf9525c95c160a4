"""dsr/engines/spark_catalog.py on Sail: a catalog name resolves to the table's location (Sail has no DESCRIBE
DETAIL, so DESCRIBE TABLE EXTENDED answers), back-quoted parts included; a view, a table that is not Delta or a
missing one is refused in one line. The SQL never holds the name's text unchecked."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from dsr.engines.spark_catalog import locate, parse_name, sql_name
from dsr.errors import InputError
from tests import lakes, spark_tables

pytestmark = pytest.mark.spark


def _schema(spark: Any, name: str) -> str:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {sql_name(name)}").collect()
    return name


def test_a_delta_table_resolves_to_its_location(spark_connect: Any, tmp_path: Path) -> None:
    where = lakes.write_table(tmp_path / "elsewhere" / "users", {"user_id": ["u1"]})
    db = _schema(spark_connect, f"crm_{uuid.uuid4().hex[:8]}")
    spark_connect.sql(f"CREATE TABLE {db}.users USING delta LOCATION '{where}'").collect()

    for name in (f"{db}.users", f"sail.{db}.users", f"`sail`.`{db}`.`users`"):
        found = locate(spark_connect, name)
        assert (found.location, found.format.lower()) == (str(where), "delta"), name
        assert found.via == "DESCRIBE TABLE EXTENDED"  # Sail 0.7 has no DESCRIBE DETAIL


def test_a_back_quoted_part_reaches_the_catalog_as_one_identifier(spark_connect: Any, tmp_path: Path) -> None:
    where = lakes.write_table(tmp_path / "t", {"user_id": ["u1"]})
    db = _schema(spark_connect, f"`crm-eu {uuid.uuid4().hex[:6]}`")
    spark_connect.sql(f"CREATE TABLE {db}.`my users` USING delta LOCATION '{where}'").collect()

    assert locate(spark_connect, f"{db}.`my users`").location == str(where)


@pytest.mark.parametrize(("make", "why"), [
    ("CREATE TABLE {name} USING parquet LOCATION '{where}'", r"not a Delta table \(its format is 'parquet'"),
    ("CREATE TEMPORARY VIEW {name} AS SELECT 1 AS user_id", "is a view"),
    (None, "cannot describe table"),
])
def test_what_is_not_a_delta_table_is_refused_in_one_line(spark_connect: Any, tmp_path: Path, make: str | None,
                                                          why: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"user_id": ["u1"]}), tmp_path / "pq" / "part-0.parquet")
    name = f"t_{uuid.uuid4().hex[:8]}"
    if make:
        spark_connect.sql(make.format(name=name, where=tmp_path / "pq")).collect()

    with pytest.raises(InputError, match=why) as err:
        locate(spark_connect, name)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_the_sql_back_quotes_every_part_of_a_checked_name() -> None:
    assert sql_name("a.`b``c`.d") == "`a`.`b``c`.`d`"
    assert parse_name("`x; DROP TABLE y`") == ("x; DROP TABLE y",)
    assert sql_name("`x; DROP TABLE y`") == "`x; DROP TABLE y`"
    for bad in ("a; DROP TABLE b", "a.b.c.d", "a..b", "a`b", "a.b -- c"):
        with pytest.raises(InputError, match="not a catalog name"):
            sql_name(bad)


def test_sails_glue_catalog_keeps_a_table_for_the_next_session(spark_catalog_remote: str, tmp_path: Path) -> None:
    """What the end-to-end tests rest on: unlike Sail's default catalog, a table registered in one session is
    found by another (as a dsr command's own session would)."""
    from pyspark.sql.connect.session import SparkSession

    where = lakes.write_table(tmp_path / "users", {"user_id": ["u1"]})
    db = f"crm_{uuid.uuid4().hex[:8]}"
    spark_tables.register_delta(spark_catalog_remote, db, "users", where)
    second = SparkSession.builder.remote(spark_catalog_remote).create()
    try:
        assert locate(second, f"{db}.users").location == str(where)
        with pytest.raises(InputError, match="cannot describe table"):
            locate(second, f"{db}.nosuch")
    finally:
        second.stop()
