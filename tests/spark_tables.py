"""Delta tables and erase plans shared by the Spark engine tests (not a fixture file: import it).

Written with delta-rs: ``write_users`` has a text subject column and is partitioned by day with several
files per partition; ``write_orders`` has integer subject columns (int64 NOT NULL, int32). Subject ids are
distinctive so a test can prove none reaches SQL text, commit info or an exception message.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from dsr.engines.base import ErasePlan
from tests import expect, lakes
from tests.leaks import Leaks

__all__ = [
    "ERASED", "INT_ERASED", "INT_OTHERS", "KEY", "OTHERS", "assert_no_subject_text", "files", "masked_users",
    "plan_and_source", "rows", "table_spec", "user_masks", "write_cdf_listed_off", "write_orders", "write_users",
]

KEY = b"spark-engine-test-key"
ERASED = ["subj-7f3a", "subj-c41d"]  # text subjects erased / scanned
OTHERS = ["subj-0b22", "subj-9e10", "subj-55aa"]
INT_ERASED = [987654321, 987650001]
INT_OTHERS = [123456789, 223456789, 323456789]


def users_schema() -> Any:
    return pa.schema([
        pa.field("user_id", pa.string()),
        pa.field("email", pa.string()),
        pa.field("full_name", pa.string()),
        pa.field("birth_date", pa.date32()),
        pa.field("signup_at", pa.timestamp("us", tz="UTC")),
        pa.field("seen_at", pa.timestamp("us")),
        pa.field("last_ip", pa.string()),
        pa.field("n", pa.int64()),
        pa.field("day", pa.string()),
    ])


def user_rows(start: int, day: str, subjects: list[str | None]) -> list[dict[str, Any]]:
    rows = []
    for i, sid in enumerate(subjects):
        k = start + i
        rows.append({
            "user_id": sid,
            "email": f"p{k}@example.org" if k % 5 else None,
            "full_name": f"Person {k}",
            "birth_date": dt.date(1970 + k % 30, 1 + k % 12, 1 + k % 28),
            "signup_at": dt.datetime(2020, 1 + k % 12, 1 + k % 28, 23, 59, 30, tzinfo=dt.UTC),
            "seen_at": dt.datetime(2021, 1 + k % 12, 1 + k % 28, 0, 30),
            "last_ip": f"10.{k % 256}.{k * 3 % 256}.{k * 7 % 256}" if k % 4 else "not-an-ip",
            "n": k,
            "day": day,
        })
    return rows


def write_users(path: Path) -> str:
    """Partitioned by day, three appends per day: several files per partition; subjects spread over them."""
    people: list[str | None] = [*ERASED, *OTHERS, None]
    start = 0
    for day in ("2026-01-01", "2026-01-02"):
        for _ in range(3):
            rows = user_rows(start, day, people)
            lakes.write_table(path, pa.Table.from_pylist(rows, schema=users_schema()), partition_by=["day"])
            start += len(people)
    # one more file holding no erased subject at all
    lakes.write_table(path, pa.Table.from_pylist(user_rows(start, "2026-01-02", OTHERS), schema=users_schema()))
    return str(path)


def write_orders(path: Path) -> str:
    """Integer subjects: user_no int64 NOT NULL (pseudonymisable), ref32 int32."""
    schema = pa.schema([
        pa.field("order_id", pa.string()), pa.field("user_no", pa.int64(), nullable=False),
        pa.field("ref32", pa.int32()), pa.field("amount", pa.decimal128(10, 2)),
        pa.field("payload", pa.binary()),
    ])
    people = [*INT_ERASED, *INT_OTHERS]
    for part in range(3):
        rows = [{
            "order_id": f"o{part}-{i}", "user_no": uid, "ref32": 1000 * part + i,
            "amount": decimal.Decimal(f"{part}{i}.25"),
            "payload": bytes([part, i]),
        } for i, uid in enumerate(people)]
        lakes.write_table(path, pa.Table.from_pylist(rows, schema=schema))
    return str(path)


def write_cdf_listed_off(path: Path) -> str:
    """A table that *lists* changeDataFeed among its writer features with change data switched off, as a table
    looks after ``ALTER TABLE ... SET TBLPROPERTIES (delta.enableChangeDataFeed = false)``: written by delta-rs
    with CDF on (writer version 4), upgraded to table features (version 7, listing changeDataFeed), CDF set off,
    then more rows appended."""
    from deltalake import DeltaTable, TableFeatures

    people: list[str | None] = [*ERASED, *OTHERS]
    lakes.write_table(path, pa.Table.from_pylist(user_rows(0, "2026-01-01", people), schema=users_schema()),
                      configuration={"delta.enableChangeDataFeed": "true"})
    table = DeltaTable(str(path))
    table.alter.add_feature(TableFeatures.ChangeDataFeed, allow_protocol_versions_increase=True)
    table.alter.set_table_properties({"delta.enableChangeDataFeed": "false"})
    lakes.write_table(path, pa.Table.from_pylist(user_rows(len(people), "2026-01-02", people), schema=users_schema()))
    return str(path)


def rows(uri: str, version: int | None = None) -> list[dict[str, Any]]:
    """Every row of the table at version (current when None), sorted, as dsr's access layer reads it."""
    from dsr.delta import access

    data = [r for batch in access.scan(uri, version=version) for r in batch.to_pylist()]
    return sorted(data, key=lambda r: repr(sorted(r.items())))


def files(uri: str) -> set[str]:
    from deltalake import DeltaTable

    return set(DeltaTable(uri).file_uris())


def table_spec(uri: str, masks: dict[str, Any], erase: str = "anonymise", subject: str = "user_id") -> Any:
    from dsr.core.masks import Strategy
    from dsr.core.policy import TableSpec

    return TableSpec(name="t", path=uri, uri=uri, subject=subject, erase=Strategy(erase), masks=tuple(masks.items()))


def plan_and_source(engine: Any, uri: str, subjects: list[str], masks: dict[str, Any], *,
                     erase: str = "anonymise", subject: str = "user_id") -> tuple[ErasePlan, Any]:
    """The plan and MERGE source the pipeline would build for ``subjects`` (masks in ``engine``'s dialect)."""
    from dsr.delta import access
    from dsr.plan.erasure import build_source, build_updates, subject_keys

    spec = table_spec(uri, masks, erase, subject)
    schema = access.table_info(uri).schema  # the engines only write: the schema comes from the access layer
    keys = subject_keys([(f"req-{i}", s) for i, s in enumerate(subjects)], schema.field(subject).type)
    source = build_source(spec, schema, keys, KEY)
    updates = build_updates(spec, schema, engine.dialect) if erase == "anonymise" else {}
    plan = ErasePlan(uri=uri, subject=subject, operation=str(spec.erase.operation), updates=updates,
                     metadata={"run_id": "run-test", "request_ids": "req-0,req-1"})
    return plan, source


def user_masks() -> dict[str, Any]:
    from dsr.core.masks import Mask

    return {
        "user_id": Mask("pseudonymise"), "email": Mask("nullify"), "full_name": Mask("redact", "[erased]"),
        "birth_date": Mask("year"), "signup_at": Mask("month"), "seen_at": Mask("year"),
        "last_ip": Mask("ipv4_24"),
    }


def masked_users(before: list[dict[str, Any]], masks: dict[str, Any], schema: Any) -> list[dict[str, Any]]:
    """The users rows as an anonymise of ``ERASED`` must leave them (README's masks, from tests/expect.py)."""
    return [
        {**r, **{c: expect.masked(m, r[c], key=KEY, subject_id=r["user_id"], kind=expect.form(schema.field(c).type))
                 for c, m in masks.items()}} if r["user_id"] in ERASED else r
        for r in before
    ]


def assert_no_subject_text(texts: list[str], subjects: list[Any]) -> None:
    """No subject id, even inside a longer token, in SQL text or commit info (``tests/leaks.py``)."""
    found = Leaks(subjects, whole_token=False).in_texts({f"text {i}": t for i, t in enumerate(texts)})
    assert found == [], f"a subject id reached SQL text / commit info: {found}"


def register_delta(remote: str, db: str, name: str, location: Path | str) -> None:
    """``db.name`` registered in the catalog of the Spark Connect server at ``remote`` as the Delta table at
    ``location``, from a session of its own (closed afterwards, as a dsr command's would be)."""
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(remote).create()
    try:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}").collect()
        spark.sql(f"CREATE TABLE {db}.{name} USING delta LOCATION '{location}'").collect()
    finally:
        spark.stop()
