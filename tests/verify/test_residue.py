"""dsr/verify/residue.py and dsr/delta/physical.py: what of an erased person is still on disk after a run.

Expectations are counted here from the files themselves (pyarrow on each parquet file, json on each log entry),
never with the scanner under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, QueryBuilder

from dsr import steps
from dsr.core import control
from dsr.delta import physical
from dsr.engines.deltars import DeltaRsEngine
from dsr.verify import residue
from tests import lakes
from tests import real_tables as rt
from tests.invoke import dsr
from tests.leaks import Leaks


def _rows_in_files(table: Path, column: str, value: Any, *, under: str = "") -> int:
    """Rows holding value in every parquet data file under the table (referenced or not), read with pyarrow."""
    files = [f for f in table.rglob("*.parquet") if "_delta_log" not in f.parts and under in str(f)]
    return sum(pq.read_table(f).column(column).to_pylist().count(value) for f in files
               if column in pq.read_schema(f).names)


def _log_hits(table: Path, column: str, value: Any) -> tuple[int, int]:
    """(statistics, partition values) naming value in the JSON log's add/remove actions, read with json."""
    stats = parts = 0
    for entry in sorted((table / "_delta_log").glob("*.json")):
        for line in entry.read_text(encoding="utf-8").splitlines():
            action = json.loads(line)
            for kind in ("add", "remove", "cdc"):
                a = action.get(kind)
                if not a:
                    continue
                parts += (a.get("partitionValues") or {}).get(column) == str(value)
                s = json.loads(a["stats"]) if a.get("stats") else {}
                stats += sum((s.get(bound) or {}).get(column) == value for bound in ("minValues", "maxValues"))
    return stats, parts


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The busy lake, its erasures and exports run once (the tests only read it), and the rows before."""
    with pytest.MonkeyPatch.context() as mp:
        lake = lakes.busy(tmp_path_factory.mktemp("residue") / "w").use(mp)
        policy = lake.policy()
        before = {t.name: lakes.rows(t.uri) for t in policy.tables}
        ids = lakes.file_requests(policy)
        assert steps.run(policy, DeltaRsEngine()).exit_code == 0
        yield {"lake": lake, "policy": policy, "before": before, "ids": ids}


def test_after_a_run_the_removed_files_still_hold_the_erased_rows_and_the_scan_finds_them(ran: Any) -> None:
    policy = ran["policy"]
    rid = ran["ids"][("erase", "1007")]
    (found,) = residue.scan(policy, control.list_requests(policy, ids=[rid]))
    events = Path(policy.table("events").uri)
    expected_events = sum(r["user_id"] == "1007" for r in ran["before"]["events"])
    assert expected_events > 0
    assert found.tables["events"]["data files"] == expected_events == _rows_in_files(events, "user_id", "1007")
    orders = Path(policy.table("orders").uri)
    assert found.tables["orders"]["data files"] == _rows_in_files(orders, "user_no", 1007) > 0
    assert found.tables["users"]["data files"] == 1  # the file before the mask; the new one holds the pseudonym
    assert found.tables["consents"] == residue.RETAINED
    stats, parts = _log_hits(events, "user_id", "1007")
    assert (found.tables["events"]["log statistics"], found.tables["events"]["partition values"]) == (stats, parts)
    assert found.own["control table"] > 0  # the control table keeps the id until a purge
    assert found.own["audit table"] == 0
    assert found.total() > 0


def test_an_uncastable_subject_matches_nothing_in_an_integer_table(ran: Any) -> None:
    policy = ran["policy"]
    (found,) = residue.scan(policy, control.list_requests(policy, ids=[ran["ids"][("erase", "x-77")]]))
    assert found.tables["orders"] == {place: 0 for place in physical.PLACES}


def test_an_exported_and_erased_subjects_document_is_residue(ran: Any) -> None:
    policy = ran["policy"]
    (found,) = residue.scan(policy, control.list_requests(policy, ids=[ran["ids"][("erase", "1003")]]))
    assert found.own["exports"] == 1  # 1003 was exported, then erased: its document is still there
    (other,) = residue.scan(policy, control.list_requests(policy, ids=[ran["ids"][("erase", "1011")]]))
    assert other.own["exports"] == 0


def test_dsr_residue_exits_1_counts_only_and_needs_no_key(ran: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lake: lakes.Lake = ran["lake"]
    env = {k: v for k, v in lake.env.items() if k != lakes.KEY_ENV}
    monkeypatch.delenv(lakes.KEY_ENV)
    text = dsr("--policy", str(lake.policy_path), "residue", env=env)
    as_json = dsr("--policy", str(lake.policy_path), "residue", "--json", env=env)
    assert text.returncode == as_json.returncode == 1, text.stderr
    report = json.loads(as_json.stdout)
    assert {r["request_id"] for r in report["requests"]} == {ran["ids"][("erase", s)] for s in lakes.ERASE}
    assert report["total"] == sum(r["total"] for r in report["requests"]) > 0
    assert "residue:" in text.stdout.splitlines()[-1]
    assert Leaks(lakes.ERASE).in_texts({"text": text.stdout, "json": as_json.stdout}) == []


@pytest.mark.parametrize(("args", "message"), [
    (("residue", "1007"), "not a request id"),
    (("residue", "req_0000000000000000"), "no request req_0000000000000000"),
])
def test_dsr_residue_refuses_what_is_not_an_erasure_request(ran: Any, args: tuple[str, ...], message: str) -> None:
    lake: lakes.Lake = ran["lake"]
    out = dsr("--policy", str(lake.policy_path), *args, env=lake.env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("dsr: error: ") and message in out.stderr and "1007" not in out.stderr
    export = ran["ids"][("export", "1005")]
    refused = dsr("--policy", str(lake.policy_path), "residue", export, env=lake.env)
    assert refused.returncode == 2 and "is an export" in refused.stderr


# --- the physical scan, place by place ----------------------------------------------------------------------


def test_a_table_partitioned_by_the_subject_names_it_in_directories_and_partition_values(tmp_path: Path) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a1", "b2", "a1"], "n": [1, 2, 3]}, partition_by=["user_id"])
    found = physical.find_keys(str(path), {"user_id"}, ["a1", "zz"])
    _, parts = _log_hits(path, "user_id", "a1")
    assert found["a1"]["file names"] == len([d for d in path.iterdir() if d.name == "user_id=a1"]) == 1
    assert found["a1"]["partition values"] == parts == 1
    assert found["a1"]["data files"] == 0  # the partition column is in the path, not the file
    assert "zz" not in found


def test_an_id_that_was_a_files_minimum_stays_in_the_log_after_its_rows_are_gone(tmp_path: Path) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a1", "m5", "z9"]})
    DeltaTable(str(path)).delete("user_id = 'm5'")  # a literal predicate: this test's own table, no real person
    dt = DeltaTable(str(path))
    dt.delete("user_id = 'a1'")
    found = physical.find_keys(str(path), {"user_id"}, ["a1"])
    stats, _ = _log_hits(path, "user_id", "a1")
    assert stats >= 2 and found["a1"]["log statistics"] == stats
    assert found["a1"]["data files"] == _rows_in_files(path, "user_id", "a1") > 0


def test_change_data_files_are_searched_apart_from_data_files(tmp_path: Path) -> None:
    path = lakes.write_table(tmp_path / "t", {"user_id": ["a1", "b2"]})
    (path / "_change_data").mkdir()
    pq.write_table(pa.table({"user_id": ["a1", "a1"], "_change_type": ["delete", "delete"]}),
                   path / "_change_data" / "cdc-00000.parquet")
    found = physical.find_keys(str(path), {"user_id"}, ["a1"])
    assert (found["a1"]["data files"], found["a1"]["change data"]) == (1, 2)


def test_rows_a_deletion_vector_masks_are_still_found_in_the_file(tmp_path: Path) -> None:
    path = Path(shutil.copytree(rt.VENDORED / "log-replay-dv-key-cases", tmp_path / "dv"))
    column = pq.read_schema(next(path.glob("*.parquet"))).names[0]
    raw = [v for f in path.glob("*.parquet") for v in pq.read_table(f).column(column).to_pylist()]
    visible = pa.table(QueryBuilder().register("t", DeltaTable(str(path))).execute(
        "SELECT * FROM t").read_all()).column(column).to_pylist()
    masked = [v for v in set(raw) if v is not None and raw.count(v) > visible.count(v)]
    assert masked, "the vendored table masks rows with deletion vectors"
    found = physical.find_keys(str(path), {column}, masked)
    for value in masked:
        assert found[value]["data files"] == raw.count(value)


def test_a_column_mapped_table_is_searched_by_its_physical_name(tmp_path: Path) -> None:
    name = "data-skipping-basic-stats-all-types-columnmapping-name"
    path = Path(shutil.copytree(rt.VENDORED / name, tmp_path / name))
    case = rt.case_for(path)
    assert case is not None and case.value is not None
    schema = DeltaTable(str(path)).schema()
    field = next(f for f in schema.fields if f.name == case.subject)
    physical_name = field.metadata["delta.columnMapping.physicalName"]
    assert physical_name != case.subject
    found = physical.find_keys(str(path), {case.subject, physical_name}, [case.value])
    assert found[case.value]["data files"] == _rows_in_files(path, physical_name, case.value) > 0
