"""Unit tests of ``dsr.delta.access``, the one Delta access layer: ``error_line``, ``open_table``, ``table_info``,
``in_predicate``, ``scan`` and ``count_rows``.

Every expectation is a literal or comes from ``lakes.rows`` (DataFusion SQL through deltalake directly), filtered
in Python: never from the access layer itself. Tables are real Delta tables under tmp_path; the vendored tables
dsr did not write (column mapping, deletion vectors) are copied there first.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dsr.delta import access
from dsr.errors import DsrError, TableError
from tests import lakes
from tests import real_tables as rt
from tests.leaks import Leaks

ODD = ["o'brien", 'say "hi"', "it''s", "back\\slash", "ünïcode", "semi;colon) OR 1=1 --", " padded "]
# Tables dsr did not write whose reading needs the full protocol: column mapping (name, id) and deletion vectors.
REAL = [
    "data-reader-timestamp_ntz-name-mode",
    "data-skipping-basic-stats-all-types-columnmapping-id",
    "data-skipping-basic-stats-all-types-columnmapping-name",
    "log-replay-dv-key-cases",
]


def _rows(batches: Iterable[Any]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in pa.Table.from_batches([batch]).to_pylist()]


def _bag(rows: Iterable[Mapping[str, Any]]) -> Counter[str]:
    return Counter(repr(sorted(r.items())) for r in rows)


@pytest.fixture
def people(tmp_path: Path) -> Path:
    """A table with text and integer subject columns, odd strings and NULLs, over two appends (v0, v1)."""
    path = tmp_path / "people"
    lakes.write_table(path, {
        "user_id": pa.array(["u1", "u2", ODD[0], ODD[1], None], pa.string()),
        "user_no": pa.array([1, 2, -3, 2**40, None], pa.int64()),
        "note": ["a", "b", "c", "d", "e"],
    })
    lakes.write_table(path, {
        "user_id": pa.array([*ODD[2:], "u2"], pa.string()),
        "user_no": pa.array([10, 11, 12, 13, 14, 2], pa.int64()),
        "note": ["f", "g", "h", "i", "j", "k"],
    })
    return path


# --- error_line -------------------------------------------------------------------------------------------


def test_error_line_keeps_only_the_first_line_and_scrubs_the_keys() -> None:
    exc = ValueError("row alice@example.org failed for u1\n| u1 | alice@example.org | 1003 |\nmore u1")
    assert access.error_line(exc, ["u1", "alice@example.org"]) == "ValueError: row <subject> failed for <subject>"


def test_error_line_replaces_longer_keys_first_and_integer_keys_too() -> None:
    exc = RuntimeError("keys u10, u1 and 1003 not found")
    assert access.error_line(exc, ["u1", "u10", 1003, None, ""]) == (
        "RuntimeError: keys <subject>, <subject> and <subject> not found")


def test_error_line_is_cut_to_300_characters_and_handles_an_empty_message() -> None:
    long = access.error_line(OSError("x" * 1000 + "\nsecond"))
    assert long == "OSError: " + "x" * 300
    assert access.error_line(KeyError()) == "KeyError: "
    assert access.error_line(ValueError("\n\n  only later\nlines")) == "ValueError: only later"


def test_error_line_scrubs_a_key_a_foreign_reader_error_quotes(tmp_path: Path) -> None:
    from deltalake import DeltaTable, QueryBuilder

    secret = "secret-subject-0042"
    path = tmp_path / "t"
    lakes.write_table(path, {"user_id": [secret]})
    with pytest.raises(Exception) as err:  # DataFusion quotes the value it cannot cast
        QueryBuilder().register("t", DeltaTable(str(path))).execute("SELECT CAST(user_id AS INT) FROM t").read_all()
    assert secret in str(err.value)
    line = access.error_line(err.value, [secret])
    assert line == "Exception: External error: Arrow error: Cast error: Cannot cast string '<subject>' to value of " \
        "Int32 type"
    assert Leaks([secret], whole_token=False).found_in(line) == []


def test_error_line_drops_the_rows_a_foreign_writer_error_previews(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    secret = "secret-subject-0043"
    path = tmp_path / "t"
    lakes.write_table(path, {"user_id": ["u1"]})
    DeltaTable(str(path)).alter.add_constraint({"id_like_u": "user_id LIKE 'u%'"})
    with pytest.raises(Exception) as err:  # delta-rs previews the rows failing a constraint on later lines
        lakes.write_table(path, {"user_id": [secret]})
    assert secret in str(err.value) and "\n" in str(err.value)
    line = access.error_line(err.value)  # no keys given: the first line alone must be free of the row
    assert "\n" not in line and line.startswith(f"{type(err.value).__name__}: ")
    assert Leaks([secret], whole_token=False).found_in(line) == []


# --- open_table and table_info ------------------------------------------------------------------------------


def test_table_info_of_a_missing_path_raises_table_error_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "table"
    with pytest.raises(TableError) as err:
        access.table_info(str(missing))
    assert isinstance(err.value, DsrError)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"cannot open the Delta table at {missing} (")


def test_open_table_of_a_folder_without_a_log_raises_table_error(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "data.parquet").write_bytes(b"PAR1")
    with pytest.raises(TableError, match=r"^cannot open the Delta table at .*plain at version 0 \("):
        access.open_table(str(tmp_path / "plain"), 0)


def test_open_table_at_a_version(people: Path) -> None:
    assert access.open_table(str(people)).version() == 1
    assert access.open_table(str(people), 0).version() == 0


def test_table_info_reads_the_log(tmp_path: Path) -> None:
    path = tmp_path / "events"
    lakes.write_table(path, {"user_id": pa.array(["u1"], pa.large_string()), "day": ["2026-01-01"],
                             "n": pa.array([1], pa.int32())}, partition_by=["day"])
    lakes.write_table(path, {"user_id": pa.array(["u2"], pa.large_string()), "day": ["2026-01-02"],
                             "n": pa.array([2], pa.int32())}, partition_by=["day"])
    info = access.table_info(str(path))
    assert info.version == 1 and info.opened is True
    assert info.partition_columns == ("day",)
    assert info.schema.names == ["user_id", "day", "n"]
    assert [info.schema.field(c).type for c in info.schema.names] == [pa.string(), pa.string(), pa.int32()]
    assert access.table_info(str(path), 0).version == 0
    assert info.reader_version >= 1 and info.writer_version >= 2


# --- in_predicate -------------------------------------------------------------------------------------------


def test_in_predicate_quotes_strings_and_the_column() -> None:
    keys = pa.array(["u1", "o'brien", 'say "hi"', "it''s", None], pa.string())
    assert access.in_predicate("user_id", keys) == """"user_id" IN ('u1', 'o''brien', 'say "hi"', 'it''''s')"""
    assert access.in_predicate('we"ird col', pa.array(["x"])) == """"we""ird col" IN ('x')"""


def test_in_predicate_writes_integers_bare_and_bytes_as_hex() -> None:
    assert access.in_predicate("user_no", pa.array([1, -2, 2**40, None], pa.int64())) == (
        '"user_no" IN (1, -2, 1099511627776)')
    assert access.in_predicate("raw", pa.array([b"\x00\xffA"], pa.binary())) == """"raw" IN (X'00ff41')"""


def test_in_predicate_without_keys_is_false() -> None:
    assert access.in_predicate("user_id", pa.array([], pa.string())) == "FALSE"
    assert access.in_predicate("user_id", pa.array([None, None], pa.string())) == "FALSE"


def test_in_predicate_refuses_booleans_and_other_types() -> None:
    with pytest.raises(TypeError, match="boolean"):
        access.in_predicate("flag", pa.array([True]))
    with pytest.raises(TypeError, match="unsupported subject key type float"):
        access.in_predicate("score", pa.array([1.5]))


# --- scan ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wanted", [["u2"], [ODD[0], "u1"], [ODD[1]], ODD, ["u2", "nobody", None]])
def test_scan_in_returns_exactly_the_rows_of_those_text_keys(people: Path, wanted: list[str | None]) -> None:
    keys = pa.array(wanted, pa.string())
    got = _rows(access.scan(str(people), where_in=("user_id", keys)))
    expected = [r for r in lakes.rows(people) if r["user_id"] is not None and r["user_id"] in wanted]
    assert expected, "a test key must be in the table"
    assert _bag(got) == _bag(expected)


def test_scan_in_returns_exactly_the_rows_of_integer_keys(people: Path) -> None:
    wanted = [2, -3, 2**40, 999]
    got = _rows(access.scan(str(people), ["user_no", "note"], where_in=("user_no", pa.array(wanted, pa.int64()))))
    expected = [{"user_no": r["user_no"], "note": r["note"]} for r in lakes.rows(people) if r["user_no"] in wanted]
    assert sorted(r["note"] for r in expected) == ["b", "c", "d", "k"]
    assert _bag(got) == _bag(expected)


def test_scan_without_keys_reads_nothing(people: Path) -> None:
    uri = str(people)
    before = access.scans[uri]
    assert list(access.scan(uri, where_in=("user_id", pa.array([], pa.string())))) == []
    assert list(access.scan(uri, where_in=("user_id", pa.array([None], pa.string())))) == []
    assert access.scans[uri] == before
    assert list(access.scan(uri, where_in=("user_id", pa.array(["nobody"])))) == []
    assert access.scans[uri] == before + 1


def test_scan_all_columns_gives_every_row_with_plain_types(people: Path) -> None:
    batches = list(access.scan(str(people)))
    assert _bag(_rows(batches)) == _bag(lakes.rows(people))
    assert len(_rows(batches)) == 11
    for batch in batches:
        assert batch.schema == pa.schema([pa.field("user_id", pa.string()), pa.field("user_no", pa.int64()),
                                          pa.field("note", pa.string())])


def test_scan_chosen_columns_in_the_order_asked(people: Path) -> None:
    got = _rows(access.scan(str(people), ["note", "user_id"]))
    assert _bag(got) == _bag({"note": r["note"], "user_id": r["user_id"]} for r in lakes.rows(people))
    assert all(list(r) == ["note", "user_id"] for r in got)


def test_scan_at_a_version(people: Path) -> None:
    got = _rows(access.scan(str(people), version=0))
    assert _bag(got) == _bag(lakes.rows(people, 0))
    assert len(got) == 5
    old_u2 = _rows(access.scan(str(people), ["note"], version=0, where_in=("user_id", pa.array(["u2"]))))
    assert old_u2 == [{"note": "b"}]


def test_scan_in_on_a_partition_column(tmp_path: Path) -> None:
    path = tmp_path / "parts"
    for day, ids in (("2026-01-01", ["u1", "u2"]), ("2026-01-02", ["u2", "u3"]), ("2026-01-03", ["u4"])):
        lakes.write_table(path, {"user_id": ids, "day": [day] * len(ids),
                                 "at": [dt.date.fromisoformat(day)] * len(ids)}, partition_by=["user_id"])
    got = _rows(access.scan(str(path), where_in=("user_id", pa.array(["u2", "u4"]))))
    expected = [r for r in lakes.rows(path) if r["user_id"] in ("u2", "u4")]
    assert len(expected) == 3
    assert _bag(got) == _bag(expected)


def test_scan_of_a_missing_table_is_a_table_error_free_of_keys(people: Path) -> None:
    with pytest.raises(TableError) as err:
        list(access.scan(str(people / "gone"), where_in=("user_id", pa.array(["secret-subject-7"]))))
    assert "\n" not in str(err.value)
    assert Leaks(["secret-subject-7"], whole_token=False).found_in(str(err.value)) == []


# --- count_rows ---------------------------------------------------------------------------------------------


def test_count_rows_at_a_version_after_an_append(people: Path) -> None:
    uri = str(people)
    assert access.count_rows(uri, 0) == len(lakes.rows(people, 0)) == 5
    assert access.count_rows(uri, 1) == access.count_rows(uri) == len(lakes.rows(people)) == 11
    lakes.write_table(people, {"user_id": pa.array(["u2"], pa.string()), "user_no": pa.array([2], pa.int64()),
                               "note": ["l"]})
    assert access.count_rows(uri) == 12
    assert access.count_rows(uri, 1) == 11
    u2 = ("user_id", pa.array(["u2"], pa.string()))
    assert access.count_rows(uri, 0, where_in=u2) == 1
    assert access.count_rows(uri, 1, where_in=u2) == 2
    assert access.count_rows(uri, where_in=u2) == sum(r["user_id"] == "u2" for r in lakes.rows(people)) == 3


def test_count_rows_with_odd_strings_integers_and_nulls(people: Path) -> None:
    uri = str(people)
    rows = lakes.rows(people)
    assert access.count_rows(uri, where_in=("user_id", pa.array(ODD))) == sum(r["user_id"] in ODD for r in rows)
    assert access.count_rows(uri, where_in=("user_no", pa.array([2, 2**40], pa.int64()))) == 3
    assert access.count_rows(uri, null_column="user_id") == sum(r["user_id"] is None for r in rows) == 1
    assert access.count_rows(uri, where_in=("user_id", pa.array([None], pa.string()))) == 0


# --- tables dsr did not write: column mapping, deletion vectors ---------------------------------------------


def test_the_real_tables_include_column_mapping_and_deletion_vectors() -> None:
    names = {p.name for p in rt.table_dirs()}
    if not set(REAL) <= names:
        pytest.skip("$DSR_REAL_TABLES names another folder of tables")
    modes = {n: access.table_info(str(rt.VENDORED / n)).configuration.get("delta.columnMapping.mode") for n in REAL}
    assert modes == {REAL[0]: "name", REAL[1]: "id", REAL[2]: "name", REAL[3]: None}
    assert "deletionVectors" in (access.table_info(str(rt.VENDORED / REAL[3])).reader_features or ())


@pytest.mark.parametrize("name", REAL)
def test_a_real_table_reads_the_same_rows_as_datafusion(tmp_path: Path, name: str) -> None:
    source = rt.VENDORED / name
    if not source.is_dir():
        pytest.skip(f"{name} is not vendored here")
    copy = tmp_path / name
    shutil.copytree(source, copy)
    expected = lakes.rows(copy)
    assert expected, f"{name} holds rows"
    assert _bag(_rows(access.scan(str(copy)))) == _bag(expected)
    assert access.count_rows(str(copy)) == len(expected)
    case = rt.case_for(copy)
    assert case is not None and case.value is not None
    keys = pa.array([case.value], access.table_info(str(copy)).schema.field(case.subject).type)
    wanted = [r for r in expected if r[case.subject] == case.value]
    assert _bag(_rows(access.scan(str(copy), where_in=(case.subject, keys)))) == _bag(wanted)
    assert access.count_rows(str(copy), where_in=(case.subject, keys)) == len(wanted)


@pytest.mark.parametrize("table", rt.table_dirs(), ids=lambda p: p.name)
def test_every_readable_real_table_reads_as_datafusion_reads_it(tmp_path: Path, table: Path) -> None:
    copy = tmp_path / table.name
    shutil.copytree(table, copy)
    try:
        expected = lakes.rows(copy)
    except Exception:
        with pytest.raises(TableError) as err:  # what DataFusion cannot read, the access layer refuses in one line
            list(access.scan(str(copy)))
        assert "\n" not in str(err.value)
        return
    assert _bag(_rows(access.scan(str(copy)))) == _bag(expected)


def test_a_version_the_log_does_not_hold_is_an_error_not_an_older_versions_metadata(tmp_path: Path) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a"]})
    lakes.write_table(path, {"user_id": ["b"]})
    with pytest.raises(TableError, match="at version 99"):
        access.table_info(str(path), 99)
    assert access.table_info(str(path), 0).version == 0


def test_scanning_a_column_the_table_lacks_is_a_table_error(tmp_path: Path) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a"]})
    with pytest.raises(TableError, match="no column\\(s\\) 'no_such_column'"):
        list(access.scan(str(path), ["no_such_column"]))


@pytest.mark.parametrize("column", ["user_id", "user_no"])
def test_a_long_key_list_is_filtered_in_arrow_with_the_same_rows_and_counts(tmp_path: Path, column: str) -> None:
    """Past BIG_IN keys the read is projected and filtered by Arrow instead of a SQL IN list; the rows (and the
    deletion-vector and column choices) are the same."""
    n = access.BIG_IN * 3
    path = tmp_path / "t"
    lakes.write_table(path, {"user_id": [f"u{i}" for i in range(n)], "user_no": list(range(n)),
                             "note": [str(i % 7) for i in range(n)]})
    lakes.write_table(path, {"user_id": [None, "u3"], "user_no": [None, 3], "note": ["x", "y"]})
    many = [*range(0, n, 2), n + 5]  # more than BIG_IN keys, one not in the table
    keys = pa.array([f"u{i}" for i in many]) if column == "user_id" else pa.array(many, pa.int64())
    assert len(keys) > access.BIG_IN
    got = _rows(access.scan(str(path), ["note"], where_in=(column, keys)))
    expected = [r for r in lakes.rows(path) if r[column] is not None and r[column] in set(keys.to_pylist())]
    assert _bag(got) == _bag({"note": r["note"]} for r in expected)
    assert access.count_rows(str(path), where_in=(column, keys)) == len(expected) == n // 2
    with_odd = pa.concat_arrays([keys, pa.array(["u3"] if column == "user_id" else [3], keys.type)])
    assert access.count_rows(str(path), where_in=(column, with_odd)) == n // 2 + 2  # u3 is in both appends
    assert access.count_rows(str(path), where_in=(column, keys.slice(0, 10))) == 10  # the IN list path


def test_one_subject_on_a_clustered_table_reads_only_the_files_its_statistics_allow(tmp_path: Path) -> None:
    """Five files of disjoint id ranges (a table clustered by subject): a filtered scan or count of one subject
    never opens the four files whose statistics rule it out (they are gone from disk, and the reads still
    answer); the file that may hold it is read (gone, the read fails)."""
    path = tmp_path / "t"
    for letter in "abcde":
        lakes.write_table(path, {"user_id": [f"{letter}{i:03d}" for i in range(40)], "n": list(range(40))})
    files: dict[str, Path] = {}
    for line in (path / "_delta_log").glob("*.json"):
        for action in map(json.loads, line.read_text(encoding="utf-8").splitlines()):
            if "add" in action:
                files[json.loads(action["add"]["stats"])["minValues"]["user_id"][:1]] = path / action["add"]["path"]
    assert sorted(files) == list("abcde")
    for other in "abde":
        files[other].unlink()
    one = ("user_id", pa.array(["c007"]))
    assert _rows(access.scan(str(path), ["n"], where_in=one)) == [{"n": 7}]
    assert access.count_rows(str(path), where_in=one) == 1
    files["c"].unlink()
    with pytest.raises(TableError):
        list(access.scan(str(path), ["n"], where_in=one))


def test_chunked_gathers_batches_into_tables_of_at_least_the_rows_asked() -> None:
    batches = [pa.record_batch({"k": list(range(n))}) for n in (3, 4, 1, 5, 2, 1)]
    assert [t.num_rows for t in access.chunked(batches, rows=7)] == [7, 8, 1]
    assert [t.num_rows for t in access.chunked([], rows=7)] == []
    assert [t.num_rows for t in access.chunked(batches)] == [16]
