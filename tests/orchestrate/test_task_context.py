"""dsr/orchestrate/task_context.py: a DAG task's policy resolves the tables it names in the Spark catalog through
the run's Spark engine (its Params), and is refused on delta-rs, before the task touches anything."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dsr.errors import PolicyError
from dsr.orchestrate.task_context import task_policy
from tests import lakes, spark_tables


def _named(root: Path) -> tuple[lakes.Lake, str]:
    lake = lakes.small(root)
    db = f"crm_{uuid.uuid4().hex[:8]}"
    text = lake.policy_path.read_text(encoding="utf-8").replace("    path: users\n", f"    table: {db}.users\n", 1)
    lake.policy_path.write_text(text, encoding="utf-8")
    return lake, db


def test_on_delta_rs_a_task_refuses_a_catalog_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake, db = _named(tmp_path)
    lake.use(monkeypatch)
    monkeypatch.delenv("DSR_ENGINE", raising=False)
    before = lakes.files(tmp_path)

    with pytest.raises(PolicyError, match=f"{db}.users.*the DAG's tasks cannot resolve.*--engine spark"):
        task_policy({"params": {"policy": str(lake.policy_path), "engine": "delta-rs", "spark_remote": None}})
    assert lakes.files(tmp_path) == before


@pytest.mark.spark
def test_on_spark_a_task_gets_the_catalog_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   spark_catalog_remote: str) -> None:

    lake, db = _named(tmp_path)
    lake.use(monkeypatch)
    spark_tables.register_delta(spark_catalog_remote, db, "users", lake.lake / "users")

    policy = task_policy({"params": {"policy": str(lake.policy_path), "engine": "spark",
                                     "spark_remote": spark_catalog_remote}})

    assert policy.table("users").uri == str(lake.lake / "users") and not policy.unresolved
