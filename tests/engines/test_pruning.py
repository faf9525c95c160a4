"""dsr/engines/pruning.py and the erase step's partition restriction: the MERGE reads only the partitions that
hold the subjects' rows, names non-personal partition values only, and erases every row."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from dsr.core.policy import load_policy
from dsr.engines.pruning import partition_predicate
from dsr.plan.erasure import prunable_partitions
from tests import lakes
from tests.invoke import dsr
from tests.leaks import Leaks


def _dq(name: str) -> str:
    return '"' + name + '"'


def test_the_predicate_names_each_partition_with_a_typed_literal() -> None:
    parts = ({"day": dt.date(2026, 1, 2), "shard": 3}, {"day": None, "shard": 1}, {"day": dt.date(2026, 1, 1),
                                                                                    "shard": 0})
    assert partition_predicate(parts, _dq) == (
        """((t."day" = CAST('2026-01-01' AS DATE) AND t."shard" = 0) OR """
        """(t."day" = CAST('2026-01-02' AS DATE) AND t."shard" = 3) OR (t."day" IS NULL AND t."shard" = 1))""")
    assert partition_predicate([{"region": "o'hara"}], _dq) == """((t."region" = 'o''hara'))"""
    assert partition_predicate([], _dq) is None and partition_predicate([{}], _dq) is None


def test_personal_and_untyped_partition_columns_are_never_named(tmp_path: Path) -> None:
    lake = lakes.small(tmp_path)
    users = load_policy(lake.policy_path).table("users")
    schema = pa.schema([("user_id", pa.string()), ("email", pa.string()), ("day", pa.date32()),
                        ("at", pa.timestamp("us")), ("n", pa.int32())])
    assert prunable_partitions(users, schema, ["user_id", "email", "day", "at", "n"]) == ["day", "n"]


def test_a_partitioned_table_is_erased_in_its_partitions_only_and_completely(tmp_path: Path) -> None:
    lake = lakes.small(tmp_path / "w")
    events = lake.lake / "events"
    rows = {"user_id": ["u1", "u2", "u1", "u2", "u1"], "page": ["/a", "/b", "/c", "/d", "/e"],
            "day": [dt.date(2026, 1, d) for d in (1, 1, 2, 3, 4)]}
    lakes.write_table(events, rows, mode="overwrite", partition_by=["day"], schema_mode="overwrite")
    assert dsr("--policy", str(lake.policy_path), "request", "erase", "u1", env=lake.env).returncode == 0
    run = dsr("--policy", str(lake.policy_path), "run", env=lake.env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(r["page"] for r in lakes.rows(events)) == ["/b", "/d"]
    log = sorted((events / "_delta_log").glob("*.json"))[-1].read_text(encoding="utf-8")
    merge = next(json.loads(x)["commitInfo"] for x in log.splitlines() if '"commitInfo"' in x)
    predicate = merge["operationParameters"]["mergePredicate"]
    assert "2026-01-01" in predicate and "2026-01-04" in predicate and "2026-01-03" not in predicate  # none on the 3rd
    assert Leaks(["u1"]).found_in(json.dumps(merge)) == []


@pytest.mark.spark
def test_the_spark_merge_is_restricted_too(tmp_path: Path, spark_remote: str) -> None:
    lake = lakes.small(tmp_path / "w")
    events = lake.lake / "events"
    lakes.write_table(events, {"user_id": ["u1", "u2", "u1"], "page": ["/a", "/b", "/c"], "region": ["eu", "us", "eu"]},
                      mode="overwrite", partition_by=["region"], schema_mode="overwrite")
    assert dsr("--policy", str(lake.policy_path), "request", "erase", "u1", env=lake.env).returncode == 0
    run = dsr("--policy", str(lake.policy_path), "run", "--engine", "spark", "--remote", spark_remote, env=lake.env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [r["page"] for r in lakes.rows(events)] == ["/b"]
