"""dsr/engines/deltars.py: the delta-rs engine (``DeltaRsEngine``) on real Delta tables in tmp_path.

Tables are written with ``lakes.write_table``; the plans and MERGE sources are built as the erase step builds
them (``tests/spark_tables.plan_and_source``). Every expectation is read back with ``lakes.rows`` and from the
``_delta_log`` JSON directly, and masked values come from ``tests/expect.py``: never from dsr's own reader or
mask code.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from dsr.core.masks import Mask
from dsr.delta.support import DELTA_RS, UPDATE
from dsr.engines.base import KEY_COLUMN, CommitResult, Engine, ErasePlan
from dsr.engines.deltars import DeltaRsEngine
from dsr.errors import TableError
from tests import expect, lakes
from tests.leaks import Leaks
from tests.real_tables import VENDORED
from tests.spark_tables import (
    ERASED,
    INT_ERASED,
    INT_OTHERS,
    KEY,
    OTHERS,
    masked_users,
    plan_and_source,
    user_masks,
    user_rows,
    users_schema,
)

ENGINE = DeltaRsEngine()
METADATA = {"run_id": "run-test", "request_ids": "req-0,req-1"}  # what plan_and_source puts in the commit


# --- tables and reading back (deltalake and the log's JSON, never dsr's access layer) --------------------------


def write_users(path: Path) -> Path:
    """Text subjects (two erased, three others, NULL), partitioned by day, three appends per day, and one
    more file without any erased subject: several files per partition."""
    people: list[str | None] = [*ERASED, *OTHERS, None]
    start = 0
    for day in ("2026-01-01", "2026-01-02"):
        for _ in range(3):
            data = pa.Table.from_pylist(user_rows(start, day, people), schema=users_schema())
            lakes.write_table(path, data, partition_by=["day"])
            start += len(people)
    lakes.write_table(path, pa.Table.from_pylist(user_rows(start, "2026-01-02", list(OTHERS)),
                                                 schema=users_schema()), partition_by=["day"])
    return path


def write_orders(path: Path, *, with_nulls: bool = False) -> Path:
    """Integer subjects: user_no int64 (NOT NULL unless ``with_nulls``), ref32 int32; three files."""
    schema = pa.schema([
        pa.field("order_id", pa.string()), pa.field("user_no", pa.int64(), nullable=with_nulls),
        pa.field("ref32", pa.int32()), pa.field("amount", pa.decimal128(10, 2)), pa.field("payload", pa.binary()),
    ])
    people: list[int | None] = [*INT_ERASED, *INT_OTHERS, *([None] if with_nulls else [])]
    for part in range(3):
        data = [{"order_id": f"o{part}-{i}", "user_no": uid, "ref32": 1000 * part + i,
                 "amount": decimal.Decimal(f"{part}{i}.25"), "payload": bytes([part, i])}
                for i, uid in enumerate(people)]
        lakes.write_table(path, pa.Table.from_pylist(data, schema=schema))
    return path


def ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: repr(sorted(r.items())))


def log_actions(path: Path, version: int) -> list[dict[str, Any]]:
    """The actions of one commit, from its JSON file in ``_delta_log``."""
    text = (path / "_delta_log" / f"{version:020d}.json").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def commit_info(path: Path, version: int) -> dict[str, Any]:
    return next(a["commitInfo"] for a in log_actions(path, version) if "commitInfo" in a)


def log_versions(path: Path) -> list[int]:
    return sorted(int(f.stem) for f in (path / "_delta_log").glob("*.json"))


def files_holding(path: Path, column: str, values: list[Any]) -> set[str]:
    """Names of the live data files whose raw parquet holds any of ``values`` in ``column``."""
    return {Path(uri).name for uri in DeltaTable(str(path)).file_uris()
            if set(pq.read_table(uri, columns=[column]).column(0).to_pylist()) & set(values)}


def assert_counts_match_the_log(path: Path, result: CommitResult) -> None:
    """The engine's own account of its commit agrees with the commit the log holds."""
    actions = log_actions(path, result.version_after)
    metrics = commit_info(path, result.version_after)["operationMetrics"]
    assert commit_info(path, result.version_after)["operation"] == "MERGE"
    assert result.version_before == result.version_after - 1 == commit_info(path, result.version_after)["readVersion"]
    assert result.rows_deleted == metrics["num_target_rows_deleted"]
    assert result.rows_updated == metrics["num_target_rows_updated"]
    assert result.rows_copied == metrics["num_target_rows_copied"]
    assert result.files_added == sum(1 for a in actions if "add" in a) == metrics["num_target_files_added"]
    assert result.files_removed == sum(1 for a in actions if "remove" in a) == metrics["num_target_files_removed"]
    assert log_versions(path)[-1] == result.version_after == lakes.version(path)


# --- the Protocol ------------------------------------------------------------------------------------------------


def test_it_implements_the_engine_protocol(tmp_path: Path) -> None:
    assert isinstance(ENGINE, Engine)
    assert (ENGINE.name, ENGINE.dialect) == ("delta-rs", "datafusion")
    assert ENGINE.support is DELTA_RS
    path = write_orders(tmp_path / "orders")
    engine = DeltaRsEngine()
    engine.close()
    engine.close()  # nothing to release: closing twice is fine and the engine still works
    result = engine.erase(*plan_and_source(engine, str(path), [str(INT_ERASED[0])], {}, erase="delete",
                                           subject="user_no"))
    assert (result.rows_deleted, result.version_after) == (3, 3)


def test_history_is_the_logs_commit_infos_newest_first(tmp_path: Path) -> None:
    path = write_orders(tmp_path / "orders")
    ENGINE.erase(*plan_and_source(ENGINE, str(path), [str(INT_ERASED[0])], {}, erase="delete", subject="user_no"))
    hist = ENGINE.history(str(path), limit=2)
    assert [h["version"] for h in hist] == [3, 2]
    assert [h["operation"] for h in hist] == ["MERGE", "WRITE"]
    assert hist[0]["operationMetrics"] == commit_info(path, 3)["operationMetrics"]
    assert {k: hist[0][k] for k in METADATA} == METADATA  # the plan's metadata, as custom commit info
    assert [h["version"] for h in ENGINE.history(str(path))] == [3, 2, 1, 0]


# --- delete --------------------------------------------------------------------------------------------------------


def test_delete_removes_exactly_the_erased_rows_and_rewrites_only_their_files(tmp_path: Path) -> None:
    path = write_users(tmp_path / "users")
    before = lakes.rows(path)
    v0 = lakes.version(path)
    assert v0 == 6
    holding = files_holding(path, "user_id", ERASED)
    all_files = {Path(u).name for u in DeltaTable(str(path)).file_uris()}
    assert 0 < len(holding) < len(all_files)
    held_rows = sum(pq.read_table(u).num_rows for u in DeltaTable(str(path)).file_uris() if Path(u).name in holding)
    erased_rows = sum(1 for r in before if r["user_id"] in ERASED)
    assert erased_rows == 12

    result = ENGINE.erase(*plan_and_source(ENGINE, str(path), ERASED, {}, erase="delete"))

    assert ordered(lakes.rows(path)) == ordered([r for r in before if r["user_id"] not in ERASED])  # value for value
    assert result == CommitResult(version_before=6, version_after=7, rows_deleted=12, rows_updated=0,
                                  rows_copied=held_rows - 12, files_added=result.files_added,
                                  files_removed=len(holding))
    assert result.committed
    assert_counts_match_the_log(path, result)
    removed = {Path(a["remove"]["path"]).name for a in log_actions(path, 7) if "remove" in a}
    assert removed == holding  # files without an erased row untouched
    assert {Path(u).name for u in DeltaTable(str(path)).file_uris()} >= all_files - holding
    assert files_holding(path, "user_id", ERASED) == set()  # gone from the live files, not only hidden
    assert lakes.rows(path, version=6) == before  # time travel still sees the version before


def test_delete_on_integer_subject_columns(tmp_path: Path) -> None:
    path = write_orders(tmp_path / "orders")
    before = lakes.rows(path)
    plan, source = plan_and_source(ENGINE, str(path), [str(i) for i in INT_ERASED] + ["x-77"], {},
                                   erase="delete", subject="user_no")
    assert source.column(KEY_COLUMN).to_pylist() == INT_ERASED  # x-77 cannot be cast: it matches nothing
    result = ENGINE.erase(plan, source)
    assert (result.version_before, result.version_after, result.rows_deleted, result.files_removed) == (2, 3, 6, 3)
    assert_counts_match_the_log(path, result)
    assert ordered(lakes.rows(path)) == ordered([r for r in before if r["user_no"] not in INT_ERASED])
    assert pa.schema(DeltaTable(str(path)).schema().to_arrow()).field("user_no").nullable is False

    # a 32-bit subject column matches exactly: 1002 (not 2, 1001 or 2002)
    plan32, source32 = plan_and_source(ENGINE, str(path), ["1002"], {}, erase="delete", subject="ref32")
    assert source32.column(KEY_COLUMN).type == pa.int32()
    result32 = ENGINE.erase(plan32, source32)
    assert (result32.rows_deleted, result32.version_after) == (1, 4)
    assert_counts_match_the_log(path, result32)
    assert ordered(lakes.rows(path)) == ordered(
        [r for r in before if r["user_no"] not in INT_ERASED and r["ref32"] != 1002])


def test_null_subjects_are_never_matched(tmp_path: Path) -> None:
    path = write_users(tmp_path / "users")
    before = lakes.rows(path)
    nulls = [r for r in before if r["user_id"] is None]
    assert len(nulls) == 6
    plan, _ = plan_and_source(ENGINE, str(path), ERASED[:1], {}, erase="delete")
    source = pa.table({KEY_COLUMN: pa.array([None, ERASED[0]], pa.string())})  # a NULL key, by hand
    result = ENGINE.erase(plan, source)
    assert result.rows_deleted == 6  # the six rows of ERASED[0], not the six NULL rows
    assert ordered(lakes.rows(path)) == ordered([r for r in before if r["user_id"] != ERASED[0]])
    assert ordered([r for r in lakes.rows(path) if r["user_id"] is None]) == ordered(nulls)

    only_null = pa.table({KEY_COLUMN: pa.array([None], pa.string())})
    assert ENGINE.erase(plan, only_null) == CommitResult(version_before=7, version_after=7)
    assert lakes.version(path) == 7


def test_null_integer_subjects_are_never_matched_by_anonymise(tmp_path: Path) -> None:
    path = write_orders(tmp_path / "orders", with_nulls=True)
    before = lakes.rows(path)
    plan, _ = plan_and_source(ENGINE, str(path), [str(INT_ERASED[1])], {"order_id": Mask("nullify")},
                              subject="user_no")
    source = pa.table({KEY_COLUMN: pa.array([None, INT_ERASED[1]], pa.int64())})
    result = ENGINE.erase(plan, source)
    assert (result.rows_updated, result.rows_deleted) == (3, 0)
    assert_counts_match_the_log(path, result)
    expected = [{**r, "order_id": None} if r["user_no"] == INT_ERASED[1] else r for r in before]
    assert ordered(lakes.rows(path)) == ordered(expected)


def test_an_erase_matching_no_row_commits_nothing(tmp_path: Path) -> None:
    path = write_orders(tmp_path / "orders")
    log_before = lakes.files(path / "_delta_log")
    # a subject with no row, an id that cannot be cast (an empty source), an anonymise matching nothing
    for subjects, masks, erase in ((["42"], {}, "delete"), (["x-77"], {}, "delete"),
                                   (["42"], {"user_no": Mask("pseudonymise")}, "anonymise")):
        plan, source = plan_and_source(ENGINE, str(path), subjects, masks, erase=erase, subject="user_no")
        result = ENGINE.erase(plan, source)
        assert result == CommitResult(version_before=2, version_after=2)
        assert not result.committed
    assert lakes.files(path / "_delta_log") == log_before  # not even an empty commit
    assert lakes.version(path) == 2


def test_erasing_again_after_a_delete_commits_nothing(tmp_path: Path) -> None:
    path = write_users(tmp_path / "users")
    first = ENGINE.erase(*plan_and_source(ENGINE, str(path), ERASED, {}, erase="delete"))
    after_first = lakes.rows(path)
    again = ENGINE.erase(*plan_and_source(ENGINE, str(path), ERASED, {}, erase="delete"))
    assert first.committed and not again.committed
    assert again == CommitResult(version_before=first.version_after, version_after=first.version_after)
    assert lakes.rows(path) == after_first


# --- anonymise -------------------------------------------------------------------------------------------------


def test_anonymise_writes_every_mask_on_the_erased_rows_only(tmp_path: Path) -> None:
    path = write_users(tmp_path / "users")
    before = lakes.rows(path)
    schema = pa.schema(DeltaTable(str(path)).schema().to_arrow())
    masks = user_masks()
    assert {m.strategy for m in masks.values()} == {"pseudonymise", "nullify", "redact", "year", "month", "ipv4_24"}
    plan, source = plan_and_source(ENGINE, str(path), ERASED, masks)
    result = ENGINE.erase(plan, source)
    assert (result.version_before, result.version_after, result.rows_updated, result.rows_deleted) == (6, 7, 12, 0)
    assert_counts_match_the_log(path, result)

    expected = masked_users(before, masks, schema)
    after = lakes.rows(path)
    assert ordered(after) == ordered(expected)
    assert len(after) == len(before)
    assert Leaks(ERASED, whole_token=False).in_rows(after) == []  # no erased id left in any row
    assert pa.schema(DeltaTable(str(path)).schema().to_arrow()) == schema
    assert DeltaTable(str(path)).metadata().partition_columns == ["day"]


def test_anonymise_mask_values_literally(tmp_path: Path) -> None:
    """Short literal expectations, edge cases included: a timestamp one second before midnight UTC at the end of a
    month and a year, a leap day, and addresses that are not dotted IPv4."""
    schema = pa.schema([
        pa.field("user_id", pa.string(), nullable=False), pa.field("email", pa.string()),
        pa.field("full_name", pa.string()), pa.field("birth_date", pa.date32()),
        pa.field("signup_at", pa.timestamp("us", tz="UTC")), pa.field("seen_at", pa.timestamp("us")),
        pa.field("last_ip", pa.string()), pa.field("n", pa.int64()),
    ])
    ips = ["192.168.17.254", "10.1.2.300", "not-an-ip", "1.2.3.4.5", "", None, "2001:db8::1", "1234.1.1.1",
           " 10.1.2.3", "10.9.8.7\n"]
    erased = [{"user_id": "subj-7f3a", "email": "a@example.org", "full_name": "Ann", "birth_date": dt.date(1980, 2, 29),
               "signup_at": dt.datetime(2020, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
               "seen_at": dt.datetime(2021, 3, 31, 23, 59, 59), "last_ip": ip, "n": i} for i, ip in enumerate(ips)]
    kept = {"user_id": "subj-0b22", "email": "b@example.org", "full_name": "Bob", "birth_date": dt.date(1991, 2, 3),
            "signup_at": dt.datetime(2022, 6, 15, 8, 0, tzinfo=dt.UTC), "seen_at": dt.datetime(2022, 6, 15, 8, 0),
            "last_ip": "10.4.5.6", "n": 99}
    path = lakes.write_table(tmp_path / "users", pa.Table.from_pylist([*erased, kept], schema=schema))
    masks = {"user_id": Mask("pseudonymise"), "email": Mask("nullify"), "full_name": Mask("redact", "[erased]"),
             "birth_date": Mask("year"), "signup_at": Mask("month"), "seen_at": Mask("year"),
             "last_ip": Mask("ipv4_24")}
    result = ENGINE.erase(*plan_and_source(ENGINE, str(path), ["subj-7f3a"], masks))
    assert result.rows_updated == len(ips)
    after = {r["n"]: r for r in lakes.rows(path)}
    assert after[99] == kept
    psn = expect.pseudonym(KEY, "subj-7f3a", "string")
    assert isinstance(psn, str) and psn.startswith("psn_") and len(psn) == 36
    for i, ip in enumerate(ips):
        assert after[i] == {
            "user_id": psn, "email": None, "full_name": "[erased]", "birth_date": dt.date(1980, 1, 1),
            "signup_at": dt.datetime(2020, 12, 1, tzinfo=dt.UTC), "seen_at": dt.datetime(2021, 1, 1),
            "last_ip": expect.network_24(ip), "n": i,
        }, f"row {i}"
    assert [after[i]["last_ip"] for i in range(4)] == ["192.168.17.0", "10.1.2.0", None, None]
    assert [after[i]["last_ip"] for i in range(4, len(ips))] == [None] * (len(ips) - 4)


def test_anonymise_pseudonymises_integer_columns(tmp_path: Path) -> None:
    path = write_orders(tmp_path / "orders")
    before = lakes.rows(path)
    sid = str(INT_ERASED[0])
    masks = {"user_no": Mask("pseudonymise"), "ref32": Mask("pseudonymise"), "payload": Mask("nullify")}
    result = ENGINE.erase(*plan_and_source(ENGINE, str(path), [sid, "x-77"], masks, subject="user_no"))
    assert (result.rows_updated, result.rows_deleted, result.version_after) == (3, 0, 3)
    assert_counts_match_the_log(path, result)
    p64, p32 = expect.pseudonym(KEY, sid, "int64"), expect.pseudonym(KEY, sid, "int32")
    assert isinstance(p64, int) and isinstance(p32, int) and p64 < 0 and p32 < 0
    expected = [{**r, "user_no": p64, "ref32": p32, "payload": None} if r["user_no"] == INT_ERASED[0] else r
                for r in before]
    after = lakes.rows(path)
    assert ordered(after) == ordered(expected)
    assert sum(1 for r in after if r["user_no"] == p64) == 3
    schema = pa.schema(DeltaTable(str(path)).schema().to_arrow())
    assert (schema.field("user_no").type, schema.field("ref32").type) == (pa.int64(), pa.int32())


def test_a_hand_built_source_and_updates_without_the_planner(tmp_path: Path) -> None:
    """The engine applies what it is handed: the source's pseudonym column and plain SQL, quoting the column
    names (one with a space and a quote)."""
    path = lakes.write_table(tmp_path / "t", {"user id": ["subj-a", "subj-b", "subj-a"], 'say "hi"': ["x", "y", "z"]})
    psn = expect.pseudonym(KEY, "subj-a", "string")
    source = pa.table({KEY_COLUMN: ["subj-a"], "__dsr_psn_string": [psn]})
    plan = ErasePlan(uri=str(path), subject="user id", operation="update",
                     updates={"user id": "s.__dsr_psn_string", 'say "hi"': "'[erased]'"})
    result = ENGINE.erase(plan, source)
    assert (result.rows_updated, result.version_after) == (2, 1)
    assert ordered(lakes.rows(path)) == ordered([
        {"user id": psn, 'say "hi"': "[erased]"}, {"user id": "subj-b", 'say "hi"': "y"},
        {"user id": psn, 'say "hi"': "[erased]"},
    ])


# --- deletion vectors --------------------------------------------------------------------------------------------


def test_delete_on_a_table_with_deletion_vectors_leaves_erased_rows_in_no_live_file(tmp_path: Path) -> None:
    path = tmp_path / "dv"
    shutil.copytree(VENDORED / "log-replay-dv-key-cases", path)
    before = lakes.rows(path)
    visible = {r["id"] for r in before}
    hidden = set(range(50)) - visible  # rows a deletion vector already hides
    assert hidden and {4, 5} <= visible
    v0 = lakes.version(path)
    result = ENGINE.erase(*plan_and_source(ENGINE, str(path), ["4", "5"], {}, erase="delete", subject="id"))
    assert (result.rows_deleted, result.version_before, result.version_after) == (2, v0, (v0 or 0) + 1)
    assert_counts_match_the_log(path, result)
    assert ordered(lakes.rows(path)) == ordered([r for r in before if r["id"] not in (4, 5)])
    raw = {v for u in DeltaTable(str(path)).file_uris() for v in pq.read_table(u, columns=["id"]).column(0).to_pylist()}
    assert raw.isdisjoint({4, 5})  # rewritten, not merely marked


# --- privacy: commit info and errors -----------------------------------------------------------------------------


def test_commit_info_never_holds_a_subject_id(tmp_path: Path) -> None:
    users = write_users(tmp_path / "users")
    orders = write_orders(tmp_path / "orders")
    ENGINE.erase(*plan_and_source(ENGINE, str(users), ERASED, user_masks()))
    ENGINE.erase(*plan_and_source(ENGINE, str(orders), [str(i) for i in INT_ERASED] + ["x-77"], {},
                                  erase="delete", subject="user_no"))
    assert commit_info(users, 7)["operation"] == commit_info(orders, 3)["operation"] == "MERGE"
    assert Leaks([*ERASED, "x-77"], whole_token=False).in_commit_info(users, orders) == []
    assert Leaks(INT_ERASED).in_commit_info(users, orders) == []  # integers as whole tokens
    # the MERGE predicate names the key column, not the keys (delta-rs' eager mode would write their range)
    merge = commit_info(users, 7)["operationParameters"]["mergePredicate"]
    assert KEY_COLUMN in merge and "user_id" in merge
    # beyond commit info: no erase commit action names a subject id, outside the data's own statistics
    for path, version in ((users, 7), (orders, 3)):
        hits = [a for a in log_actions(path, version) if Leaks([*ERASED, *INT_ERASED]).found_in(
            json.dumps({k: {f: x for f, x in v.items() if f != "stats"} if isinstance(v, dict) else v
                        for k, v in a.items()}))]
        assert hits == [], f"an action of version {version} names a subject id"


def test_the_plans_metadata_goes_into_the_commit_and_none_when_empty(tmp_path: Path) -> None:
    path = write_orders(tmp_path / "orders")
    plan, source = plan_and_source(ENGINE, str(path), [str(INT_ERASED[0])], {}, erase="delete", subject="user_no")
    ENGINE.erase(plan, source)
    info = commit_info(path, 3)
    assert {k: info[k] for k in METADATA} == METADATA
    bare = ErasePlan(uri=plan.uri, subject=plan.subject, operation=plan.operation)
    ENGINE.erase(bare, pa.table({KEY_COLUMN: pa.array([INT_ERASED[1]], pa.int64())}))
    assert not set(METADATA) & set(commit_info(path, 4))


def test_a_failed_merge_raises_a_table_error_without_subject_ids_and_writes_nothing(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("user_id", pa.string()), pa.field("email", pa.string(), nullable=False),
                        pa.field("n", pa.int64())])
    path = lakes.write_table(tmp_path / "t", {"user_id": [ERASED[0], OTHERS[0]], "email": ["a@x.org", "b@x.org"],
                                              "n": [1, 2]}, schema=schema)
    before = lakes.rows(path)
    source = pa.table({KEY_COLUMN: [ERASED[0]]})
    leaks = Leaks([*ERASED, "a@x.org"], whole_token=False)
    # NULL into a NOT NULL column: delta-rs' error previews the offending row (the subject id with it)
    broken = ErasePlan(uri=str(path), subject="user_id", operation="update", updates={"email": "NULL"})
    # a cast of the subject: delta-rs' first line quotes the value
    cast = ErasePlan(uri=str(path), subject="user_id", operation="update",
                     updates={"n": 'CAST(t."user_id" AS BIGINT)'})
    for plan in (broken, cast):
        with pytest.raises(TableError, match=r"delta-rs MERGE into .* failed") as info:
            ENGINE.erase(plan, source)
        message = str(info.value)
        assert "\n" not in message
        assert leaks.found_in(message) == [], "the error message names a subject id or a row's value"
        assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "<subject>" in message  # the cast error's quoted value, replaced
    assert lakes.version(path) == 0
    assert lakes.rows(path) == before


def test_an_operation_it_cannot_do_is_refused_before_any_write(tmp_path: Path) -> None:
    path = write_orders(tmp_path / "orders")
    source = pa.table({KEY_COLUMN: pa.array([INT_ERASED[0]], pa.int64())})
    for operation in ("retain", "insert", ""):
        with pytest.raises(ValueError, match="engine erase cannot do"):
            ENGINE.erase(ErasePlan(uri=str(path), subject="user_no", operation=operation), source)
    assert lakes.version(path) == 2
    assert log_versions(path) == [0, 1, 2]


def test_an_update_of_a_column_the_table_lacks_is_refused_before_any_write(tmp_path: Path) -> None:
    """delta-rs alone would ignore the assignment and commit "1 row updated" with nothing masked."""
    path = write_orders(tmp_path / "orders")
    source = pa.table({KEY_COLUMN: pa.array([INT_ERASED[0]], pa.int64())})
    plan = ErasePlan(uri=str(path), subject="user_no", operation=UPDATE, updates={"nope": "NULL"})
    with pytest.raises(TableError, match="no column\\(s\\) 'nope'"):
        ENGINE.erase(plan, source)
    assert lakes.version(path) == 2
    assert log_versions(path) == [0, 1, 2]
