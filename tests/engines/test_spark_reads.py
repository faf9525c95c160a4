"""``dsr.engines.spark_reads.SparkReader``: every read of the Reader Protocol as a Spark job on a Sail server, equal
to the in-process ``LocalReader``'s on the same tables (written with delta-rs in tmp_path).

The tables hold what trips readers: text ids with quotes, unicode and blanks, NULL ids, integer ids, older
versions (time travel), a partition column, files that predate the subject column (schema evolution), partition
values with characters paths and glob patterns give meaning to, and a column-mapped table (physical names). Ids
are distinctive, so a test can prove none reaches SQL text or an error message.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dsr.delta import access, commits
from dsr.delta.plainfiles import FilePass
from dsr.engines.reading import LOCAL, normalise
from tests import lakes
from tests import real_tables as rt
from tests.leaks import Leaks

pytestmark = [pytest.mark.spark]

QUOTED = ["o'brien-4f1", 'say "hi"-77b', "back`tick-a90", "zoë-ßtraße-31c"]
PLAIN = ["subj-7f3a", "subj-c41d"]
OTHERS = ["subj-0b22", "subj-9e10"]
INT_IDS = [987654321, 987650001]
INT_OTHERS = [123456789, 223456789]
TEXT_IDS = [*QUOTED, *PLAIN]
PER_APPEND = len(TEXT_IDS) + len(OTHERS) + 1  # rows per append of the people table (one NULL id)


@pytest.fixture
def reader(spark_connect: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from dsr.engines.spark import SparkEngine

    monkeypatch.delenv("DSR_SPARK_SERVER", raising=False)
    return SparkEngine(spark_connect).reader


def _keys(values: Iterable[Any], arrow_type: Any = None) -> Any:
    return pa.array(list(values), arrow_type or pa.string())


def _multiset(batches: Iterable[Any]) -> list[str]:
    return sorted(repr(sorted(r.items())) for b in batches for r in b.to_pylist())


def _table_rows(table: Any) -> list[str]:
    return sorted(repr(sorted(r.items())) for r in table.to_pylist())


# --- tables ---------------------------------------------------------------------------------------------------


def _people(path: Path) -> str:
    """Text ids (quotes, unicode, NULL) and integer ids, partitioned by day; three appends, then a delete, so
    versions 0..3 differ (v3 removes one of OTHERS' rows)."""
    from deltalake import DeltaTable

    schema = pa.schema([pa.field("user_id", pa.string()), pa.field("user_no", pa.int64()),
                        pa.field("n", pa.int64()), pa.field("day", pa.string())])
    n = 0
    for day in ("2026-01-01", "2026-01-02", "2026-01-02"):
        people = [*TEXT_IDS, *OTHERS, None]
        numbers = [*INT_IDS, *INT_OTHERS, None, *INT_IDS, None]
        rows = [{"user_id": sid, "user_no": numbers[i % len(numbers)], "n": n + i, "day": day}
                for i, sid in enumerate(people)]
        n += len(rows)
        lakes.write_table(path, pa.Table.from_pylist(rows, schema=schema), partition_by=["day"])
    DeltaTable(str(path)).delete(f"n = {len(TEXT_IDS)}")  # the first of OTHERS in the first file
    return str(path)


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _people(tmp_path_factory.mktemp("people") / "people")


def _both(reader: Any, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return getattr(reader, method)(*args, **kwargs), getattr(LOCAL, method)(*args, **kwargs)


# --- scan ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [PLAIN, QUOTED, [QUOTED[0], "nobody-here-1"], [], [None], [None, PLAIN[0]]],
                         ids=["plain", "quotes-unicode", "one-absent", "empty", "null", "null-and-one"])
def test_scan_by_text_keys_returns_what_the_local_reader_returns(reader: Any, people: str, keys: list[Any]) -> None:
    columns = ["user_id", "n", "day"]
    spark, local = _both(reader, "scan", people, columns, where_in=("user_id", _keys(keys)))
    spark, local = list(spark), list(local)
    assert _multiset(spark) == _multiset(local)
    wanted = {k for k in keys if k is not None}
    assert {r["user_id"] for b in spark for r in b.to_pylist()} == wanted - {"nobody-here-1"}
    assert all(b.schema.names == columns for b in spark)
    if wanted - {"nobody-here-1"}:
        assert sum(b.num_rows for b in spark) == 3 * len(wanted - {"nobody-here-1"})


def test_scan_by_integer_keys_and_at_an_older_version(reader: Any, people: str) -> None:
    keys = pa.array([INT_IDS[0], INT_OTHERS[0]], pa.int64())
    for version in (None, 0):
        spark, local = _both(reader, "scan", people, ["user_no", "user_id", "n"], where_in=("user_no", keys),
                             version=version)
        spark, local = list(spark), list(local)
        assert _multiset(spark) == _multiset(local) and spark
        assert spark[0].schema.field("user_no").type == pa.int64()
    assert sum(b.num_rows for b in reader.scan(people, ["n"], where_in=("user_no", keys), version=0)) == 4
    assert sum(b.num_rows for b in reader.scan(people, ["n"], where_in=("user_no", keys))) == 12


# --- group_counts -------------------------------------------------------------------------------------------


def test_group_counts_by_subject_and_partition_column(reader: Any, people: str) -> None:
    keys = _keys([*QUOTED[:2], PLAIN[0], "nobody-here-1", None])
    spark, local = _both(reader, "group_counts", people, ["user_id", "day"], where_in=("user_id", keys))
    assert _table_rows(spark) == _table_rows(local)
    assert spark.schema == local.schema
    got = {(r["user_id"], r["day"]): r["count_all"] for r in spark.to_pylist()}
    assert got == {(k, d): c for k in [*QUOTED[:2], PLAIN[0]] for d, c in (("2026-01-01", 1), ("2026-01-02", 2))}
    empty, local_empty = _both(reader, "group_counts", people, ["user_id", "day"], where_in=("user_id", _keys([])))
    assert empty.num_rows == 0 and empty.schema == local_empty.schema


# --- count_rows ---------------------------------------------------------------------------------------------


def test_count_rows_at_each_version_with_keys_and_nulls(reader: Any, people: str) -> None:
    expected = {0: PER_APPEND, 1: 2 * PER_APPEND, 2: 3 * PER_APPEND, 3: 3 * PER_APPEND - 1}
    for version, rows in expected.items():
        assert reader.count_rows(people, version) == LOCAL.count_rows(people, version) == rows
        assert reader.count_rows(people, version, null_column="user_id") == version + 1 - (version == 3)
        assert reader.count_rows(people, version, null_column="user_id") == LOCAL.count_rows(
            people, version, null_column="user_id")
        keys = ("user_id", _keys([OTHERS[0], QUOTED[3], None]))
        assert reader.count_rows(people, version, where_in=keys) == LOCAL.count_rows(people, version, where_in=keys)
    assert reader.count_rows(people, 3, where_in=("user_id", _keys([OTHERS[0]]))) == 2  # one deleted at v3
    assert reader.count_rows(people, 2, where_in=("user_id", _keys([OTHERS[0]]))) == 3
    assert reader.count_rows(people, None, where_in=("user_id", _keys([]))) == 0
    assert reader.count_rows(people, None, where_in=("user_id", _keys([None]))) == 0  # NULL never matches


def test_tally_is_the_three_counts_in_one_job_at_each_version(reader: Any, people: str) -> None:
    keys = _keys([OTHERS[0], QUOTED[3], OTHERS[0], None])  # a repeated key counts its rows once
    for version in range(4):
        jobs = reader.jobs
        spark = reader.tally(people, "user_id", keys, version=version)
        assert reader.jobs == jobs + 1
        rows = LOCAL.count_rows(people, version)
        expected = (rows, rows - LOCAL.count_rows(people, version, null_column="user_id"),
                    LOCAL.count_rows(people, version, where_in=("user_id", keys)))
        assert spark == LOCAL.tally(people, "user_id", keys, version=version) == expected
    assert reader.tally(people, "user_id", None)[2] == reader.tally(people, "user_id", _keys([]))[2] == 0


def test_counts_at_a_version_the_cluster_cannot_time_travel_to_come_from_the_files_it_listed(
        reader: Any, tmp_path: Path) -> None:
    """Sail 0.7 writes a checkpoint with every tenth commit, and from then on cannot time-travel to any version
    before it ("Missing commit file: expected version 0, found ..."), while delta-rs can. The reconcile's counts at
    the version before an erase then come from the files delta-rs lists live at it, read as plain Parquet on the
    cluster."""
    uri = str(tmp_path / "tenth")
    for n in range(10):
        lakes.write_table(uri, pa.table({"user_id": [f"u{n}", f"u{n + 1}", None], "n": [n, n, n]}))
    reader.spark.sql(f"DELETE FROM delta.`{uri}` WHERE n = 3").collect()  # Sail's commit 10, with a checkpoint
    assert access.table_info(uri).version == 10
    assert (tmp_path / "tenth" / "_delta_log" / f"{10:020d}.checkpoint.parquet").exists()
    with pytest.raises(Exception, match="Missing commit file"):  # the cluster's own time travel fails
        reader._table(uri, 9).count()
    keys = _keys(["u1", "u4", "nobody"])
    jobs = reader.jobs
    assert reader.tally(uri, "user_id", keys, version=9) == LOCAL.tally(uri, "user_id", keys, version=9) == (30, 20, 4)
    assert reader.jobs > jobs  # counted on the cluster
    assert reader.count_rows(uri, 9) == 30
    assert reader.count_rows(uri, 9, where_in=("user_id", keys)) == 4
    assert reader.count_rows(uri, 9, null_column="user_id") == 10
    assert reader.tally(uri, "user_id", keys) == LOCAL.tally(uri, "user_id", keys) == (27, 18, 3)


# --- subject_pass -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [[QUOTED[2], PLAIN[1], "nobody-here-1"], None, ["nobody-here-1"]],
                         ids=["some", "none-given", "absent"])
def test_subject_pass_counts_and_survivors_equal_the_local_readers(reader: Any, people: str, keys: Any) -> None:
    info = access.table_info(people)
    given = None if keys is None else _keys(keys)
    spark, local = _both(reader, "subject_pass", people, "user_id", given, version=info.version, info=info)
    rows, non_null = 3 * PER_APPEND - 1, 3 * (PER_APPEND - 1) - 1  # v3 deleted one non-NULL row
    assert (spark.rows, spark.non_null) == (local.rows, local.non_null) == (rows, non_null)
    assert sorted(spark.survivors.column(0).to_pylist()) == sorted(local.survivors.column(0).to_pylist())
    assert spark.survivors.schema == local.survivors.schema
    found = {k for k in (keys or []) if k != "nobody-here-1"}
    assert sorted(spark.survivors.column(0).to_pylist()) == sorted(list(found) * 3)


def test_subject_pass_at_an_older_version(reader: Any, people: str) -> None:
    info = access.table_info(people, 0)
    spark, local = _both(reader, "subject_pass", people, "user_no", pa.array(INT_IDS, pa.int64()), version=0,
                         info=info)
    assert (spark.rows, spark.non_null) == (local.rows, local.non_null) == (PER_APPEND, PER_APPEND - 2)
    assert sorted(spark.survivors.column(0).to_pylist()) == sorted(local.survivors.column(0).to_pylist()) \
        == sorted([*INT_IDS, *INT_IDS, INT_IDS[0]])


# --- file_pass ----------------------------------------------------------------------------------------------


def _live(uri: str) -> list[str]:
    return sorted(commits.live_files(uri, access.table_info(uri).version))


def _evolved(path: Path) -> str:
    """Two files without the subject column, then two with it (``schema_mode="merge"``)."""
    for i in range(2):
        lakes.write_table(path, {"n": pa.array([10 * i, 10 * i + 1], pa.int64())})
    schema = pa.schema([pa.field("n", pa.int64()), pa.field("user_id", pa.string())])
    lakes.write_table(path, pa.table({"n": [20, 21, 22], "user_id": [PLAIN[0], None, OTHERS[0]]}, schema=schema),
                      schema_mode="merge")
    lakes.write_table(path, pa.table({"n": [30, 31], "user_id": [PLAIN[0], PLAIN[1]]}, schema=schema))
    return str(path)


def test_file_pass_reads_files_that_predate_the_subject_column_as_nulls(reader: Any, tmp_path: Path) -> None:
    uri = _evolved(tmp_path / "evolved")
    paths = _live(uri)
    assert len(paths) == 4
    keys = _keys([PLAIN[0], "nobody-here-1"])
    spark = reader.file_pass(uri, paths, "user_id", pa.string(), keys)
    assert spark == LOCAL.file_pass(uri, paths, "user_id", pa.string(), keys)
    assert (spark.files, spark.rows, spark.non_null, spark.hits) == (4, 9, 4, 2)
    # only the old files: every row NULL, no hit
    old = [p for p in paths if "user_id" not in _columns_in(uri, p)]
    assert len(old) == 2
    assert reader.file_pass(uri, old, "user_id", pa.string(), keys) == LOCAL.file_pass(
        uri, old, "user_id", pa.string(), keys) == FilePass(2, 4, 0, 0)


def _columns_in(uri: str, path: str) -> list[str]:
    from urllib.parse import unquote

    import pyarrow.parquet as pq

    return list(pq.read_schema(f"{uri}/{unquote(path)}").names)


# partition values with characters paths, URLs and glob patterns give meaning to
AWKWARD = ["a b", "100%", "x/y", "k=v", "[ab]", "a*", "q?", "{c,d}", "%2F", "é ü"]


def test_file_pass_reads_files_under_partition_values_with_special_characters(reader: Any, tmp_path: Path) -> None:
    uri = str(tmp_path / "awkward")
    for i, part in enumerate(AWKWARD):
        lakes.write_table(uri, pa.table({"user_id": [PLAIN[0], OTHERS[i % 2], None], "part": [part] * 3}),
                          partition_by=["part"])
    paths = _live(uri)
    assert len(paths) == len(AWKWARD)
    keys = _keys([PLAIN[0]])
    for path in paths:  # one file at a time: a glob that matched another file, or none, would show
        assert reader.file_pass(uri, [path], "user_id", pa.string(), keys) == LOCAL.file_pass(
            uri, [path], "user_id", pa.string(), keys) == FilePass(
            1, 3, 2, 1), path
    every = reader.file_pass(uri, paths, "user_id", pa.string(), keys)
    assert (every.files, every.rows, every.non_null, every.hits) == (len(AWKWARD), 3 * len(AWKWARD),
                                                                      2 * len(AWKWARD), len(AWKWARD))


def _renamed(uri: str, names: list[str], decoys: list[str]) -> list[str]:
    """One delta-rs append per name, each data file renamed to that name (its add path URL-encoded in the log,
    as the protocol says); and, beside them, ``decoys``: Parquet files no commit lists, each holding the erased
    id three times, named so that a live file's name read as a glob pattern would match them."""
    import json
    import os
    from urllib.parse import quote

    import pyarrow.parquet as pq

    for i, name in enumerate(names):
        lakes.write_table(uri, pa.table({"user_id": [PLAIN[0], OTHERS[0]], "n": [i, i]}))
        (path,) = commits.commit_actions(uri, i).adds
        os.rename(f"{uri}/{path[0]}", f"{uri}/{name}")
        log = Path(uri) / "_delta_log" / f"{i:020d}.json"
        log.write_text(log.read_text().replace(json.dumps(path[0]), json.dumps(quote(name, safe="/"))))
    for decoy in decoys:
        pq.write_table(pa.table({"user_id": [PLAIN[0]] * 3, "n": [-1] * 3}), f"{uri}/{decoy}")
    live = _live(uri)
    assert len(live) == len(names) and sorted(lakes.rows(uri), key=repr) == sorted(
        [{"user_id": u, "n": i} for i in range(len(names)) for u in (PLAIN[0], OTHERS[0])], key=repr)
    return live


GLOBBY = ["f[1].parquet", "f*.parquet", "f?.parquet", "f{a,b}.parquet", "g%41.parquet", "h#1.parquet",
          "sub dir/i:1.parquet"]
DECOYS = ["f1.parquet", "fz.parquet", "fa.parquet", "gA.parquet", "sub dir/i.parquet"]


def test_file_pass_reads_exactly_the_files_listed_whatever_their_names(reader: Any, tmp_path: Path) -> None:
    """Spark's readers take a path as a pattern (Hadoop's glob; Sail's glob for a local path, URL decoding for
    a URL): a name with ``[ ] * ? { } %`` must still mean that one file, never a decoy or nothing."""
    uri = str(tmp_path / "globby")
    (tmp_path / "globby" / "sub dir").mkdir(parents=True)
    live = _renamed(uri, GLOBBY, DECOYS)
    keys = _keys([PLAIN[0]])
    for path in live:
        assert reader.file_pass(uri, [path], "user_id", pa.string(), keys) == LOCAL.file_pass(
            uri, [path], "user_id", pa.string(), keys) == FilePass(
            1, 2, 2, 1), path
    every = reader.file_pass(uri, live, "user_id", pa.string(), keys)
    assert (every.rows, every.non_null, every.hits) == (2 * len(GLOBBY), 2 * len(GLOBBY), len(GLOBBY))


def test_file_pass_on_s3_reads_files_under_partition_values_with_special_characters(
    reader: Any, s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On S3 a file's location is a URL: the partition folders delta-rs writes (``part=a%20b``: the value
    percent-encoded in the key itself) must reach the object's key unchanged, not URL-decoded to another."""
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")  # Sail's S3 client, to moto's http endpoint
    uri = "s3://lake/awkward-parts"
    for i, part in enumerate(AWKWARD):
        lakes.write_table(uri, pa.table({"user_id": [PLAIN[0], OTHERS[i % 2], None], "part": [part] * 3}),
                          partition_by=["part"])
    paths = _live(uri)
    keys = _keys([PLAIN[0]])
    local = LOCAL.file_pass(uri, paths, "user_id", pa.string(), keys)
    assert (local.rows, local.non_null, local.hits) == (3 * len(AWKWARD), 2 * len(AWKWARD), len(AWKWARD))
    for path in paths:
        assert reader.file_pass(uri, [path], "user_id", pa.string(), keys) == LOCAL.file_pass(
            uri, [path], "user_id", pa.string(), keys), path
    assert reader.file_pass(uri, paths, "user_id", pa.string(), keys) == local


@pytest.mark.parametrize(("server", "base", "expected"), [
    ("delta-spark", "/lake/t", "/lake/t/p=a%20b/f\\[1\\]\\*\\?\\{a,b\\}\\\\x.parquet"),
    ("databricks", "s3a://b/t/", "s3a://b/t/p=a%20b/f\\[1\\]\\*\\?\\{a,b\\}\\\\x.parquet"),
    ("unknown", "s3://b/t", "s3://b/t/p=a%20b/f\\[1\\]\\*\\?\\{a,b\\}\\\\x.parquet"),
    ("sail", "/lake/my t", "file:///lake/my%20t/p%3Da%2520b/f%5B1%5D%2A%3F%7Ba%2Cb%7D%5Cx.parquet"),
    ("sail", "s3://b/t/", "s3://b/t/p%3Da%2520b/f%5B1%5D%2A%3F%7Ba%2Cb%7D%5Cx.parquet"),
])
def test_a_file_location_means_that_one_file_to_the_servers_reader(server: str, base: str, expected: str) -> None:
    """Hadoop's glob (Spark with delta-spark, Databricks; also an unknown server) takes a backslash escape;
    Sail takes a percent-encoded URL (tested against the server itself above)."""
    from dsr.engines.spark_reads import file_location

    logged = "p=a%2520b/f%5B1%5D%2A%3F%7Ba%2Cb%7D%5Cx.parquet"  # the log's URL-encoding of the key
    assert file_location(base, logged, server) == expected


def test_file_pass_reads_a_column_mapped_table_by_physical_name(reader: Any, tmp_path: Path) -> None:
    case = rt.case_for(rt.VENDORED / "data-skipping-basic-stats-all-types-columnmapping-name")
    assert case is not None
    uri = str(lakes.around(tmp_path, case, "delete").lake / case.name)
    info = access.table_info(uri)
    physical = info.physical_name("as_int")
    assert physical != "as_int"
    keys = pa.array([case.value], pa.int32())
    spark = reader.file_pass(uri, _live(uri), physical, pa.int32(), keys)
    assert spark == LOCAL.file_pass(uri, _live(uri), physical, pa.int32(), keys)
    assert (spark.rows, spark.non_null, spark.hits) == (1, 1, 1)
    # by the logical name, the files hold no such column: all NULL (what a blind reader sees)
    blind = reader.file_pass(uri, _live(uri), "as_int", pa.int32(), keys)
    assert (blind.rows, blind.non_null, blind.hits) == (1, 0, 0)


def test_file_pass_of_no_files_reads_nothing(reader: Any, people: str) -> None:
    before = reader.jobs
    assert reader.file_pass(people, [], "user_id", pa.string(), _keys(PLAIN)) == LOCAL.file_pass(
        people, [], "user_id", pa.string(), _keys(PLAIN))
    assert reader.jobs == before


# --- near_counts --------------------------------------------------------------------------------------------


def test_near_counts_normalise_unicode_case_and_blanks_like_the_local_reader(reader: Any, tmp_path: Path) -> None:
    name = "José-Ünal-5d1"
    nfd = unicodedata.normalize("NFD", name)
    assert nfd != name
    values = [name, nfd, name.upper(), f"  {name.lower()}\t", "jose-unal-5d1", OTHERS[0], None, "ﬁ-ligature-9"]
    uri = str(lakes.write_table(tmp_path / "names", {"user_id": pa.array(values, pa.string())}))
    wanted = _keys([name, "Fi-Ligature-9"])
    forms = normalise(wanted)
    spark, local = _both(reader, "near_counts", uri, "user_id", wanted, forms)
    assert spark == local == {normalise(_keys([name])).to_pylist()[0]: 3, "fi-ligature-9": 1}
    assert reader.near_counts(uri, "user_id", _keys([OTHERS[0]]), normalise(_keys([OTHERS[0]]))) == {}


# --- privacy: no subject id in statements or error messages -----------------------------------------------------


def test_failed_reads_name_no_subject_id(reader: Any, people: str, tmp_path: Path) -> None:
    ids = [*TEXT_IDS, "nobody-here-1"]
    failures: list[str] = []

    def fails(call: Any) -> None:
        with pytest.raises(Exception) as info:  # any error: its message is what is checked
            call()
        failures.append(f"{type(info.value).__name__}: {info.value}")

    keys = _keys(ids)
    fails(lambda: list(reader.scan(people, ["no_such_column"], where_in=("user_id", keys))))
    fails(lambda: reader.file_pass(people, ["_delta_log/00000000000000000000.json"], "user_id", pa.string(), keys))
    fails(lambda: reader.file_pass(people, _live(people), "user_id", pa.int64(), pa.array([1], pa.int64())))
    fails(lambda: reader.count_rows(str(tmp_path / "no-table"), where_in=("user_id", keys)))
    fails(lambda: reader.near_counts(people, "no_such_column", keys, normalise(keys)))
    assert all(f.split(": ", 1)[1].startswith("spark: ") or "no-table" in f for f in failures), failures
    assert Leaks(ids, whole_token=False).in_texts(dict(enumerate(failures))) == [], failures  # type: ignore[arg-type]


def test_a_spark_run_puts_no_subject_id_in_statements_or_errors(
    tmp_path: Path, spark_connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole run on the Spark engine (export scan, erase planning, verification's reads and evidence), then one
    whose cluster reads fail: the SQL the engine ran, the run's errors and the requests' errors hold no id."""
    from dsr import steps
    from dsr.core import control
    from dsr.core.policy import load_policy
    from dsr.engines.spark import SparkEngine
    from dsr.engines.spark_reads import SparkReader
    from tests import spark_tables as st

    monkeypatch.setenv(lakes.KEY_ENV, lakes.KEY)
    monkeypatch.delenv("DSR_SPARK_SERVER", raising=False)
    st.write_users(tmp_path / "lake" / "users")
    policy = load_policy(lakes.write_policy(tmp_path, "lake: ./lake\nexports: ./exports\ntables:\n  - name: users\n"
                                                      "    path: users\n    subject: user_id\n    erase: delete\n"))
    ids = [*st.ERASED, *st.OTHERS]
    for sid in st.ERASED:
        control.submit(policy, "erase", sid)
    control.submit(policy, "export", st.OTHERS[0])
    engine = SparkEngine(spark_connect)
    report = steps.run(policy, engine)
    assert report.exit_code == 0, report.as_dict()
    assert isinstance(engine.reader, SparkReader) and engine.reader.jobs > 0
    assert len(engine.statements) == 1 and engine.statements[0].startswith("MERGE INTO delta.`")

    control.submit(policy, "erase", st.OTHERS[1])
    control.submit(policy, "export", st.OTHERS[2])
    monkeypatch.setattr(SparkReader, "_table", lambda self, uri, version=None: self.spark.read.format(
        "delta").load(self._path(uri) + "-gone"))
    failed = steps.run(policy, engine)
    assert failed.exit_code == 1 and failed.errors
    texts = {"statements": "\n".join(engine.statements), "errors": "\n".join(failed.errors),
             **{r.request_id: r.error or "" for r in control.list_requests(policy)}}
    assert any("on the cluster failed" in e for e in failed.errors), failed.errors
    assert Leaks(ids, whole_token=False).in_texts(texts) == [], texts
