"""DagBag integrity of dags/: the dsr_process DAG imports cleanly and is configured as operators expect."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.airflow

DAGS = Path(__file__).resolve().parent.parent / "dags"
DAG_FILE = DAGS / "dsr_process.py"


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pytest.MonkeyPatch]:
    """A throw-away AIRFLOW_HOME, set before airflow is imported here (parsing needs no metadata DB)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
        for var in ("DSR_SCHEDULE", "DSR_POLICY", "DSR_ENGINE", "SPARK_REMOTE"):
            mp.delenv(var, raising=False)
        yield mp


def _bag(mp: pytest.MonkeyPatch) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS), safe_mode=False)


@pytest.fixture(scope="module")
def bag(airflow_env: pytest.MonkeyPatch) -> Any:
    return _bag(airflow_env)


@pytest.fixture(scope="module")
def dag(bag: Any) -> Any:
    return bag.dags["dsr_process"]


def test_dags_import_without_errors(bag: Any) -> None:
    assert bag.import_errors == {}
    assert "dsr_process" in bag.dags


def test_every_dag_has_tags_retries_and_docs(bag: Any) -> None:
    for dag_id, dag in bag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md, dag_id
        for t in dag.tasks:
            assert t.retries >= 1, t.task_id
            assert t.retry_exponential_backoff, t.task_id


def test_dsr_process_runs_one_at_a_time_without_catchup(dag: Any) -> None:
    assert {"dsr", "gdpr"} <= set(dag.tags)
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.dag_id == DAG_FILE.stem
    assert dag.start_date.year == 2026 and str(dag.start_date.tzinfo) == "UTC"
    assert dag.timetable.expression == "0 * * * *"  # hourly by default


@pytest.mark.parametrize(("value", "expression"), [("0 3 * * *", "0 3 * * *"), ("@daily", "0 0 * * *"), ("none", None)])
def test_schedule_can_be_set_from_the_environment(
    airflow_env: pytest.MonkeyPatch, value: str, expression: str | None
) -> None:
    airflow_env.setenv("DSR_SCHEDULE", value)
    try:
        dag = _bag(airflow_env).dags["dsr_process"]
    finally:
        airflow_env.delenv("DSR_SCHEDULE")
    assert getattr(dag.timetable, "expression", None) == expression
    assert (expression is None) == (not dag.timetable.can_be_scheduled)


def test_params_name_policy_engine_and_spark_remote(dag: Any) -> None:
    params = dag.params
    assert params["policy"] == "dsr.yml"
    assert params["engine"] == "delta-rs"
    assert params["spark_remote"] is None
    assert params.get_param("engine").schema["enum"] == ["delta-rs", "spark"]


def test_tasks_claim_export_finish_erase_verify_complete_in_order(dag: Any) -> None:
    ids = {t.task_id for t in dag.tasks}
    assert {"claim", "export", "finish_exports", "erase", "verify", "complete"} <= ids
    up = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert "claim" in dag.get_task("export").get_flat_relative_ids(upstream=True)
    assert "export" in up["finish_exports"]
    assert "finish_exports" in dag.get_task("erase").get_flat_relative_ids(upstream=True)
    assert "erase" in up["verify"]
    assert "verify" in up["complete"]
    assert [t.task_id for t in dag.tasks if not t.downstream_task_ids] == ["complete"]


def test_per_table_steps_are_mapped_and_complete_always_runs(dag: Any) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    for task_id in ("export", "erase", "verify"):
        assert isinstance(dag.get_task(task_id), MappedOperator), task_id
    assert dag.get_task("complete").trigger_rule == "all_done"
    # an empty table list skips the mapped tasks; what follows them must still run
    for task_id in ("finish_exports", "verify"):
        assert dag.get_task(task_id).trigger_rule == "none_failed_min_one_success"


def test_dag_file_has_no_heavy_imports_at_top_level() -> None:
    tree = ast.parse(DAG_FILE.read_text())
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert not top & {"dsr", "deltalake", "pyarrow", "pandas", "great_expectations", "pyspark"}, top
