"""The residue scan's data files read on the cluster (Spark's reader, on a Sail server) find what the in-process
scan finds, place by place: the same counts on every kind of table, with no subject id in SQL text or errors.

Each test runs :func:`dsr.delta.physical.find_keys` twice, with the rows read in this process (``LOCAL``) and by
the Spark engine's reader, and compares; the expected counts themselves are in ``tests/verify/test_residue.py``.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from dsr import steps
from dsr.core import control
from dsr.delta import physical
from dsr.engines.deltars import DeltaRsEngine
from dsr.engines.reading import LOCAL, Reader
from dsr.verify import residue
from tests import lakes
from tests import real_tables as rt
from tests.invoke import dsr, dsr_process
from tests.leaks import Leaks

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def engine(spark_connect: Any) -> Any:
    from dsr.engines.spark import SparkEngine

    return SparkEngine(spark_connect)  # the test session's: close() leaves it open


def _both(engine: Any, path: Path, names: set[str], keys: Any) -> dict[Any, Counter[str]]:
    """find_keys with the rows read in this process and on the cluster: asserted equal, returned."""

    def found(reader: Reader) -> dict[Any, Counter[str]]:
        return physical.find_keys(str(path), names, keys.to_pylist(),
                                  rows=lambda files: reader.key_rows(str(path), files, names, keys))

    jobs = engine.reader.jobs
    here, there = found(LOCAL), found(engine.reader)
    assert there == here
    assert engine.reader.jobs > jobs  # the cluster read the files
    assert engine.statements == []  # the reader runs DataFrame jobs; the keys travel as data
    return here


def test_an_unreferenced_file_still_holding_the_id_is_counted_on_the_cluster(tmp_path: Path, engine: Any) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a1", "b2", "a1", "c3"], "n": [1, 2, 3, 4]})
    lakes.write_table(path, {"user_id": ["a1", "d4"], "n": [5, 6]})
    DeltaTable(str(path)).delete("user_id = 'a1'")  # a literal predicate: this test's own table, no real person
    found = _both(engine, path, {"user_id"}, pa.array(["a1", "b2", "zz"]))
    assert found["a1"]["data files"] == 3 and found["b2"]["data files"] == 2  # b2's row was copied: two files
    assert "zz" not in found


def test_change_data_files_are_counted_apart_on_the_cluster(tmp_path: Path, engine: Any) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a1", "b2", "c3"]},
                             configuration={"delta.enableChangeDataFeed": "true"})
    DeltaTable(str(path)).delete("user_id = 'a1'")
    assert list(path.glob("_change_data/*.parquet")), "delta-rs writes change data for a delete on a CDF table"
    found = _both(engine, path, {"user_id"}, pa.array(["a1", "c3"]))
    assert found["a1"]["change data"] >= 1 and found["a1"]["data files"] == 1
    assert found["c3"]["change data"] == 0


GLOBBY = ["a[1]", "a1", "b*", "bb", "c?d", "cxd", "{e,f}", "e", "a{", "a}b", "a\\b", "g h", "x%20y", "x y", "p=q"]


def test_files_under_partition_values_spark_would_glob_are_read_one_for_one(tmp_path: Path, engine: Any) -> None:
    """``a[1]`` as a glob matches ``a1``, ``b*`` ``bb``...: each file is read by its own name, once. Delta writers
    escape such values in directory names (``day=a%5B1%5D``); files copied by other tools may not: both."""
    users = [f"u{i}" for i in range(len(GLOBBY))]
    path = lakes.write_table(tmp_path / "t", {"day": GLOBBY, "user_id": users}, partition_by=["day"])
    for day, user in zip(GLOBBY, users, strict=True):
        (path / f"day={day}").mkdir(exist_ok=True)
        pq.write_table(pa.table({"user_id": [user, user]}), path / f"day={day}" / "part-copied.parquet")
    found = _both(engine, path, {"user_id"}, pa.array(users))
    assert all(found[u]["data files"] == 3 for u in users)


def test_a_table_partitioned_by_the_subject_has_no_id_in_its_files(tmp_path: Path, engine: Any) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": GLOBBY, "n": list(range(len(GLOBBY)))},
                             partition_by=["user_id"])
    found = _both(engine, path, {"user_id"}, pa.array(GLOBBY))
    assert all(found[u]["data files"] == 0 and found[u]["file names"] == 1 for u in GLOBBY)


def test_a_column_mapped_real_table_is_read_by_its_physical_name(tmp_path: Path, engine: Any) -> None:
    name = "data-skipping-basic-stats-all-types-columnmapping-name"
    path = Path(shutil.copytree(rt.VENDORED / name, tmp_path / name))
    case = rt.case_for(path)
    assert case is not None and case.value is not None
    field = next(f for f in DeltaTable(str(path)).schema().fields if f.name == case.subject)
    physical_name = field.metadata["delta.columnMapping.physicalName"]
    arrow_type = pq.read_schema(next(path.glob("*.parquet"))).field(physical_name).type
    found = _both(engine, path, {case.subject, physical_name}, pa.array([case.value], arrow_type))
    assert found[case.value]["data files"] > 0


def test_integer_subjects_in_files_of_other_integer_and_text_types(tmp_path: Path, engine: Any) -> None:
    """Files that disagree on the column's type (an int32 file, a text file left by another writer) cannot be
    read together: they are grouped by their schema and compared as text, as the in-process scan compares."""
    path = lakes.write_table(tmp_path / "t", {"user_no": pa.array([1007, 5, 1007], pa.int64()), "n": [1, 2, 3]})
    pq.write_table(pa.table({"user_no": pa.array([1007, 9], pa.int32()), "n": pa.array([1, 2], pa.int32())}),
                   path / "part-old-int32.parquet")
    pq.write_table(pa.table({"user_no": pa.array(["1007", "x"])}), path / "part-old-text.parquet")
    pq.write_table(pa.table({"user_no": pa.array([{"a": 1007}])}), path / "part-nested.parquet")
    found = _both(engine, path, {"user_no"}, pa.array([1007, 9, 12], pa.int64()))
    assert found[1007]["data files"] == 4 and found[9]["data files"] == 1 and 12 not in found


def test_a_schema_evolved_table_whose_old_files_lack_the_column(tmp_path: Path, engine: Any) -> None:
    path = lakes.write_table(tmp_path / "t", {"n": [1, 2]})
    lakes.write_table(path, {"n": [3, 4], "user_id": ["a1", "b2"]}, schema_mode="merge")
    lakes.write_table(path, {"n": [5], "user_id": ["a1"]})
    found = _both(engine, path, {"user_id"}, pa.array(["a1", "b2"]))
    assert found["a1"]["data files"] == 2 and found["b2"]["data files"] == 1


def test_files_spark_skips_by_name_are_still_counted(tmp_path: Path, engine: Any) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a1"]})
    pq.write_table(pa.table({"user_id": ["a1", "a1"]}), path / ".part-left-by-a-crash.parquet")
    pq.write_table(pa.table({"user_id": ["a1"]}), path / "_stray.parquet")
    found = _both(engine, path, {"user_id"}, pa.array(["a1"]))
    assert found["a1"]["data files"] == 4


def test_a_reader_error_names_no_subject_id(tmp_path: Path, engine: Any) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a1", "b2"], "n": [1, 2]}, partition_by=["user_id"])
    (path / "user_id=a1" / "part-broken.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(Exception) as info:
        engine.reader.key_rows(str(path), {"data files": [str(p.relative_to(path)) for p in path.rglob("*.parquet")]},
                               {"user_id"}, pa.array(["a1", "b2"]))
    assert "residue" in str(info.value) or "schema" in str(info.value)
    assert Leaks(["a1", "b2"]).in_texts({"error": str(info.value)}) == []
    assert engine.statements == []


# --- the scan of a lake, and the command --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The busy lake after a run (its erasures leave residue: old files, log entries, the control table)."""
    with pytest.MonkeyPatch.context() as mp:
        lake = lakes.busy(tmp_path_factory.mktemp("residue-spark") / "w").use(mp)
        policy = lake.policy()
        lakes.file_requests(policy)
        assert steps.run(policy, DeltaRsEngine()).exit_code == 0
        yield lake


def test_the_scan_of_a_lake_on_the_cluster_equals_the_scan_in_this_process(ran: lakes.Lake, engine: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ran.use(monkeypatch)
    policy = ran.policy()
    todo = [r for r in control.list_requests(policy, status="completed") if r.kind == "erase"]
    jobs = engine.reader.jobs
    there = [r.as_dict() for r in residue.scan(policy, todo, reader=engine.reader)]
    assert engine.reader.jobs > jobs
    assert there == [r.as_dict() for r in residue.scan(policy, todo)]
    assert sum(r["total"] for r in there) > 0


def test_a_purge_with_the_spark_engine_checks_the_tables_files_on_the_cluster(
    ran: lakes.Lake, engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsr.steps import purge as purging

    lake = lakes.copy(ran, tmp_path / "w").use(monkeypatch)
    lake.policy_path.write_text(lake.policy_path.read_text() + "purge_after_hours: 0\n", encoding="utf-8")
    # a file no version references, holding an erased id (as a crashed writer leaves one): the purge's search
    # of such files reads it on the cluster too, never row by row in this process
    stray = lake.lake / "events" / "part-stray-0000.parquet"
    pq.write_table(pa.table({"user_id": [lakes.ERASE[0], "kept-someone"]}), stray)

    def here(*args: Any) -> bool:
        raise AssertionError("the purge searched an unreferenced file in this process")

    monkeypatch.setattr(physical, "holds_any", here)
    jobs = engine.reader.jobs
    report = purging.purge(lake.policy(), engine=engine)
    assert report.exit_code == 0, report.as_dict()
    assert engine.reader.jobs > jobs
    assert report.tables and all(t.residue == 0 for t in report.tables)
    assert not stray.exists()
    assert engine.statements == []


def test_dsr_residue_engine_spark_prints_what_the_default_prints(ran: lakes.Lake, spark_remote: str) -> None:
    args = ("--policy", str(ran.policy_path), "residue")
    spark = ("--engine", "spark", "--remote", spark_remote)
    here_json, here_text = dsr(*args, "--json", env=ran.env), dsr(*args, env=ran.env)
    there_json = dsr_process(*args, "--json", *spark, env=ran.env)
    there_text = dsr_process(*args, "--remote", spark_remote, env=ran.env)
    assert there_json.returncode == here_json.returncode == 1, there_json.stderr
    assert json.loads(there_json.stdout) == json.loads(here_json.stdout)
    assert there_text.returncode == 1 and there_text.stdout == here_text.stdout
    assert Leaks(lakes.ERASE).in_texts({"out": there_json.stdout + there_text.stdout,
                                        "err": there_json.stderr + there_text.stderr}) == []


def test_dsr_residue_refuses_a_bad_engine_before_reading(ran: lakes.Lake) -> None:
    out = dsr("--policy", str(ran.policy_path), "residue", "--engine", "delta-rs", "--remote", "sc://127.0.0.1:1",
              env=ran.env)
    assert out.returncode == 2 and out.stdout == "" and "--remote" in out.stderr
