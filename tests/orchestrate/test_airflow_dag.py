"""DagBag integrity of dags/: dsr_process (one task per step of ``STEPS``), dsr_backfill, and
dags/spark_submit/dsr_process_spark_submit (one spark-submit of jobs/process.py, kept out of dags/ by its
.airflowignore) import cleanly and are configured as operators expect."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.airflow

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILE = DAGS / "dsr_process.py"
SUBMIT_FILE = DAGS / "spark_submit" / "dsr_process_spark_submit.py"
BACKFILL_FILE = DAGS / "dsr_backfill.py"


def _both_shapes(root: Path) -> Path:
    """A DAGs folder holding every DAG file (links to the real ones, so their paths resolve to the checkout), as
    a deployment that put both shapes side by side would: what the spark-submit tests parse."""
    folder = root / "all_dags"
    folder.mkdir()
    for f in (DAG_FILE, BACKFILL_FILE, SUBMIT_FILE):
        (folder / f.name).symlink_to(f)
    return folder


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
    assert set(bag.dags) == {"dsr_backfill", "dsr_process"}


def test_pointing_dags_folder_at_dags_loads_dsr_process_and_dsr_backfill_but_never_the_spark_submit_variant(
    tmp_path: Path,
) -> None:
    """dags_folder = dags/ (README's Deploy): the two DAGs, and not the spark-submit variant, which would claim
    requests on its own schedule beside dsr_process. The README's switch (.airflowignore naming dsr_process.py)
    gives the other shape: dsr_backfill and dsr_process_spark_submit."""
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "print(json.dumps([[sorted(b.dags), sorted(b.import_errors)] for b in\n"
        "                  (DagBag(dag_folder=f, safe_mode=False) for f in sys.argv[1:])]))\n"
    )
    other = tmp_path / "dags"
    shutil.copytree(DAGS, other, ignore=shutil.ignore_patterns("__pycache__"))
    assert (other / ".airflowignore").read_text(encoding="utf-8").splitlines()[-1] == "spark_submit/"
    (other / ".airflowignore").write_text("dsr_process.py\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", code, str(DAGS), str(other)], env=_subprocess_env(tmp_path),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    (dags, errors), (switched, switched_errors) = json.loads(done.stdout.strip().splitlines()[-1])
    assert dags == ["dsr_backfill", "dsr_process"] and errors == []
    assert switched == ["dsr_backfill", "dsr_process_spark_submit"] and switched_errors == []
    readme = (DAGS.parent / "README.md").read_text(encoding="utf-8")
    deploy = readme.split("### Deploy", 1)[1].split("\n### ", 1)[0]
    for name in ("dags/dsr_process.py", "dags/dsr_backfill.py", "dags/spark_submit/dsr_process_spark_submit.py",
                 "dags/.airflowignore"):
        assert f"`{name}`" in deploy, name


def test_the_dag_runs_the_claim_then_every_step_of_steps_in_order_then_the_sweep_and_the_purge(dag: Any) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from dsr.steps.run import STEPS

    order = [t.task_id for t in dag.topological_sort() if t.task_id != "check_deadlines"]
    assert order == ["claim", *(s.name for s in STEPS), "sweep", "purge"]
    sweep, purge = dag.get_task("sweep"), dag.get_task("purge")
    assert sweep.upstream_task_ids == {STEPS[-1].name} and sweep.trigger_rule == "all_success"
    assert purge.upstream_task_ids == {"sweep"} and purge.trigger_rule == "all_success"
    for previous, step in zip(order, STEPS, strict=False):
        task = dag.get_task(step.name)
        assert isinstance(task, MappedOperator) == bool(step.per_table), step.name
        assert {"claim", previous} <= set(task.upstream_task_ids), step.name
        assert (task.trigger_rule == "all_done") == step.always, step.name


def test_work_items_name_each_table_once_with_the_steps_that_process_it() -> None:
    from dsr.orchestrate.airflow_dag import work_items

    batch = {"run_id": "r", "requests": 3, "exports": 1, "erasures": 2,
             "export_tables": ["users", "orders"], "erase_tables": ["users", "orders", "events"]}
    assert work_items(batch) == [
        {"table": "users", "steps": ["export", "erase", "verify"]},
        {"table": "orders", "steps": ["export", "erase", "verify"]},
        {"table": "events", "steps": ["erase", "verify"]},
    ]
    only_exports = {**batch, "erasures": 0, "erase_tables": []}
    assert work_items(only_exports) == [{"table": "users", "steps": ["export"]},
                                        {"table": "orders", "steps": ["export"]}]
    assert work_items({**only_exports, "export_tables": []}) == []


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


def test_tasks_claim_export_finish_erase_verify_complete_purge_in_order(dag: Any) -> None:
    ids = {t.task_id for t in dag.tasks}
    assert {"claim", "export", "finish_exports", "erase", "verify", "complete"} <= ids
    up = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert "claim" in dag.get_task("export").get_flat_relative_ids(upstream=True)
    assert "export" in up["finish_exports"]
    assert "finish_exports" in dag.get_task("erase").get_flat_relative_ids(upstream=True)
    assert "erase" in up["verify"]
    assert "verify" in up["complete"]
    assert "complete" in up["sweep"] and "sweep" in up["purge"]
    assert [t.task_id for t in dag.tasks if not t.downstream_task_ids] == ["check_deadlines", "purge"]


def test_check_deadlines_stands_beside_the_batch_and_every_task_has_the_notifier(dag: Any) -> None:
    check = dag.get_task("check_deadlines")
    assert not check.upstream_task_ids and not check.downstream_task_ids
    assert dag.params["warn_days"] == 7 and dag.params.get_param("warn_days").schema["type"] == "integer"
    for t in dag.tasks:
        callbacks = t.on_failure_callback if isinstance(t.on_failure_callback, list) else [t.on_failure_callback]
        assert [type(c).__name__ for c in callbacks] == ["LogNotifier"], t.task_id


def test_erase_and_sweep_declare_the_erased_tables_alias_as_outlet(bag: Any, dag: Any) -> None:
    from airflow.sdk import AssetAlias

    from dsr.orchestrate.lineage import ALIAS, asset_uri

    for task in (dag.get_task("erase"), dag.get_task("sweep"), bag.dags["dsr_backfill"].get_task("sweep")):
        assert task.outlets == [AssetAlias(ALIAS)], task.task_id
    assert {t.task_id for t in dag.tasks if t.outlets} == {"erase", "sweep"}
    assert asset_uri("/data/lake/events") == "file:///data/lake/events"
    assert asset_uri("s3://bucket/lake/events/") == "s3://bucket/lake/events"


def test_the_backfill_dag_is_manual_with_a_typed_form_and_maps_per_table(bag: Any) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = bag.dags["dsr_backfill"]
    assert dag.timetable.can_be_scheduled is False and dag.max_active_runs == 1
    assert [t.task_id for t in dag.topological_sort()] == ["tables", "sweep", "summary"]
    assert isinstance(dag.get_task("sweep"), MappedOperator)
    assert dag.get_task("summary").trigger_rule == "all_done"
    params = dag.params
    assert params["dry_run"] is True and params["tables"] == [] and params["full"] is False
    assert params["since_version"] is None and params["since_date"] is None
    assert params.get_param("tables").schema["type"] == "array"
    assert params.get_param("since_version").schema["type"] == ["null", "integer"]
    assert params.get_param("since_date").schema["format"] == "date"
    assert params.get_param("engine").schema["enum"] == ["delta-rs", "spark"]


def test_per_table_steps_are_mapped_and_complete_always_runs(dag: Any) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    for task_id in ("export", "erase", "verify"):
        assert isinstance(dag.get_task(task_id), MappedOperator), task_id
    assert dag.get_task("complete").trigger_rule == "all_done"
    # an empty table list skips the mapped tasks; what follows them must still run
    for task_id in ("finish_exports", "verify"):
        assert dag.get_task(task_id).trigger_rule == "none_failed_min_one_success"


def test_parsing_the_dags_imports_nothing_heavy(tmp_path: Path) -> None:
    """The dag-processor parses dags/ often: the DAG files import Airflow's SDK and dsr's step declaration,
    never deltalake, pyarrow, pandas, Great Expectations or pyspark (the tasks import those when they run)."""
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bags = [DagBag(dag_folder=f, safe_mode=False) for f in ({str(DAGS)!r}, {str(SUBMIT_FILE.parent)!r})]\n"
        "heavy = ('deltalake', 'pyarrow', 'pandas', 'great_expectations', 'pyspark')\n"
        "print(json.dumps([sorted(d for b in bags for d in b.dags), sorted(e for b in bags for e in b.import_errors),\n"
        "                  [m for m in heavy if m in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_subprocess_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dags, errors, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert dags == ["dsr_backfill", "dsr_process", "dsr_process_spark_submit"] and errors == []
    assert heavy == []


# --- dsr_process_spark_submit: one SparkSubmitOperator task running jobs/process.py ---------------------------

ROOT = DAGS.parent
APPLICATION = ROOT / "jobs" / "process.py"
SPARK_PROVIDER = "airflow.providers.apache.spark.operators.spark_submit"
SECRET = "do-not-leak-this-pseudonym-key-0123456789"
RUN_ID = "scheduled__2026-03-04T05:06:07+00:00"

# Parses dags/ once per configuration, each with its environment set before the parse (the DAG reads it at
# parse time), and prints what the tests check as JSON. In a subprocess, so nothing leaks into this one.
_PARSE = r"""
import json, os, sys
from airflow.dag_processing.dagbag import DagBag

out = []
for config in json.loads(sys.argv[1]):
    for var in [v for v in os.environ if v.startswith("DSR_SPARK_")]:
        del os.environ[var]
    os.environ.update(config["env"])
    if config.get("no_provider"):
        sys.modules[sys.argv[3]] = None  # as if apache-airflow-providers-apache-spark were not installed
    else:
        sys.modules.pop(sys.argv[3], None)
    bag = DagBag(dag_folder=sys.argv[2], safe_mode=False)
    res = {"import_errors": {os.path.basename(k): v.strip().splitlines()[-1] for k, v in bag.import_errors.items()},
           "dags": sorted(bag.dags)}
    dag = bag.dags.get("dsr_process_spark_submit")
    if dag is not None:
        res["dag"] = {"tasks": sorted(dag.task_ids), "tags": sorted(dag.tags), "doc_md": dag.doc_md,
                      "max_active_runs": dag.max_active_runs, "catchup": dag.catchup,
                      "schedule": getattr(dag.timetable, "expression", None), "params": dag.params.dump()}
        if "spark_submit" in dag.task_ids:
            t = dag.get_task("spark_submit")
            jinja = dag.get_template_env()
            res["task"] = {
                "class": f"{type(t).__module__}.{type(t).__name__}",
                "template_fields": {f: getattr(t, f) for f in t.template_fields},
                "rendered_args": [jinja.from_string(a).render(params=dag.params.dump(), run_id=sys.argv[4])
                                  for a in t.application_args],
                "conn_id": t._conn_id, "retries": t.retries, "backoff": t.retry_exponential_backoff,
                "retry_delay": t.retry_delay.total_seconds(), "owner": t.owner,
                "verbose": t._verbose, "spark_binary": t._spark_binary,
            }
    out.append(res)
print("\n" + json.dumps(out, default=str))
"""


def _subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "DSR_", "SPARK_REMOTE", "SPARK_CONNECT_MODE", "PYSPARK_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        **extra,
    })
    return env


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The DAG as the dag-processor parses it under several configurations (name -> facts)."""
    configs = {
        "submit": {"env": {}},
        "submit_custom": {"env": {
            "DSR_SPARK_CONN_ID": "spark_yarn", "DSR_SPARK_APPLICATION": "s3://b/process.py",
            "DSR_SPARK_PACKAGES": "io.delta:delta-spark_4.2_2.13:4.4.1", "DSR_SPARK_PYTHON": "/opt/venv/bin/python",
        }},
        "without_provider": {"env": {}, "no_provider": True},
        "legacy_switch": {"env": {"DSR_SPARK_SUBMIT": "1"}},
        "legacy_switch_off": {"env": {"DSR_SPARK_SUBMIT": "0"}},
    }
    home = tmp_path_factory.mktemp("airflow_home_submit")
    env = _subprocess_env(home, DSR_PSEUDONYM_KEY=SECRET)
    folder = _both_shapes(tmp_path_factory.mktemp("deployed"))
    done = subprocess.run(
        [sys.executable, "-c", _PARSE, json.dumps(list(configs.values())), str(folder), SPARK_PROVIDER, RUN_ID],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(configs, json.loads(done.stdout.strip().splitlines()[-1]), strict=True))


def test_the_spark_submit_dag_is_one_spark_submit_task(parsed: dict[str, dict[str, Any]]) -> None:
    res = parsed["submit"]
    assert res["import_errors"] == {}
    assert res["dags"] == ["dsr_backfill", "dsr_process", "dsr_process_spark_submit"]
    assert res["dag"]["tasks"] == ["check_deadlines", "spark_submit"]  # check_deadlines: beside the batch
    task = res["task"]
    assert task["class"] == f"{SPARK_PROVIDER}.SparkSubmitOperator"
    fields = task["template_fields"]
    assert fields["application"] == str(APPLICATION) and APPLICATION.is_file()
    args = fields["application_args"]
    assert args[args.index("--policy") + 1] == "{{ params.policy }}"
    assert "run_id" in args[args.index("--run-id") + 1]
    assert task["conn_id"] == "spark_default"
    assert fields["name"] == "dsr_process"
    assert fields["packages"] is None and fields["env_vars"] is None and fields["conf"] is None
    assert task["spark_binary"] is None and task["verbose"] is False  # spark-submit from PATH or the connection


def test_spark_submit_args_render_to_policy_batch_id_and_remote(parsed: dict[str, dict[str, Any]]) -> None:
    # the batch id is the run id sanitised exactly as the TaskFlow steps' _batch_id() does
    assert parsed["submit"]["task"]["rendered_args"] == [
        "--policy", "dsr.yml", "--run-id", "af_scheduled__2026-03-04T05_06_07_00_00", "--remote", "",
    ]


def test_the_spark_submit_dag_keeps_the_dag_settings(parsed: dict[str, dict[str, Any]]) -> None:
    dag, task = parsed["submit"]["dag"], parsed["submit"]["task"]
    assert {"dsr", "gdpr"} <= set(dag["tags"])
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    assert dag["schedule"] == "0 * * * *"
    assert "spark-submit" in dag["doc_md"] and "not both" in dag["doc_md"]
    assert dag["params"] == {"policy": "dsr.yml", "spark_remote": None, "warn_days": 7}  # always the Spark engine
    assert task["retries"] == 2 and task["backoff"] is True and task["retry_delay"] == 60
    assert task["owner"] == "privacy-engineering"


def test_spark_submit_never_carries_the_pseudonym_key(parsed: dict[str, dict[str, Any]]) -> None:
    for name in ("submit", "submit_custom"):
        text = json.dumps(parsed[name]["task"], default=str)
        assert "DSR_PSEUDONYM_KEY" not in text and SECRET not in text, name
        assert "PSEUDONYM" not in text.upper(), name


def test_spark_submit_settings_come_from_the_environment(parsed: dict[str, dict[str, Any]]) -> None:
    res = parsed["submit_custom"]
    assert res["import_errors"] == {}
    task = res["task"]
    fields = task["template_fields"]
    assert task["conn_id"] == "spark_yarn"
    assert fields["application"] == "s3://b/process.py"
    assert fields["packages"] == "io.delta:delta-spark_4.2_2.13:4.4.1"
    assert fields["env_vars"] == {"PYSPARK_PYTHON": "/opt/venv/bin/python",
                                  "PYSPARK_DRIVER_PYTHON": "/opt/venv/bin/python"}


def test_without_the_spark_provider_only_the_spark_submit_dag_fails_to_import(
    parsed: dict[str, dict[str, Any]]
) -> None:
    res = parsed["without_provider"]
    assert res["dags"] == ["dsr_backfill", "dsr_process"]
    errors = res["import_errors"]
    assert list(errors) == [SUBMIT_FILE.name] and "apache-airflow-providers-apache-spark" in errors[SUBMIT_FILE.name]


def test_the_old_spark_submit_switch_is_refused_loudly(parsed: dict[str, dict[str, Any]]) -> None:
    """DSR_SPARK_SUBMIT used to change dsr_process's shape at parse time: now dsr_process refuses to load
    while it is set, naming the DAG to deploy instead (never silently TaskFlow where spark-submit was meant)."""
    res = parsed["legacy_switch"]
    assert res["dags"] == ["dsr_backfill", "dsr_process_spark_submit"]
    assert list(res["import_errors"]) == [DAG_FILE.name]
    assert "dsr_process_spark_submit" in res["import_errors"][DAG_FILE.name]
    assert parsed["legacy_switch_off"]["import_errors"] == {}


@pytest.mark.spark
@pytest.mark.slow
def test_the_spark_submit_dag_runs_the_batch_on_spark_connect(
    tmp_path: Path, spark_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``airflow dags test`` of the spark-submit DAG: SparkSubmitOperator runs pyspark's spark-submit with the
    connection's master ``local[*]``; jobs/process.py, the driver, runs the batch on the Sail server."""
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "spark-submit").exists() or shutil.which("java") is None:
        pytest.skip("spark-submit (pyspark) or java not found")
    from dsr.cli.main import main as dsr
    from dsr.core import control
    from dsr.core.policy import load_policy
    from tests import lakes

    monkeypatch.setenv("DSR_PSEUDONYM_KEY", lakes.KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    lake = lakes.busy(tmp_path / "lake")
    for kind, subjects in (("erase", lakes.ERASE), ("export", lakes.EXPORT)):
        for s in subjects:
            assert dsr(["--policy", str(lake.policy_path), "request", kind, s]) == 0

    home = tmp_path / "airflow_home"
    env = _subprocess_env(
        home, **lake.env, AIRFLOW__CORE__DAGS_FOLDER=str(SUBMIT_FILE.parent),
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": "local[*]"}),
        PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",  # spark-submit, as on a worker
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    airflow = str(venv_bin / "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=180)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    # SPARK_REMOTE must not be in spark-submit's environment (it refuses it next to --master): a run Param
    test = subprocess.run(
        [airflow, "dags", "test", "dsr_process_spark_submit", "-c", json.dumps({"spark_remote": spark_remote})],
        env=env, capture_output=True, text=True, errors="replace", timeout=400,
    )
    output = test.stdout + test.stderr
    assert test.returncode == 0 and "state=success" in output, output[-5000:]

    command = re.search(r"Spark-Submit cmd: (.*?) \[", output)
    assert command is not None, output[-5000:]
    assert f"--master local[*] --name dsr_process {APPLICATION} --policy {lake.policy_path}" in command.group(1)
    batch = re.search(r"--run-id (af_\S+) --remote (\S+)", command.group(1))
    assert batch is not None and batch.group(2) == spark_remote, command.group(1)
    assert f"run {batch.group(1)} (spark):" in output and ", 0 failed" in output

    requests = control.list_requests(load_policy(lake.policy_path))
    assert len(requests) == len(lakes.ERASE) + len(lakes.EXPORT)
    assert {(r.status, r.run_id) for r in requests} == {("completed", batch.group(1))}
    subjects = re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, {*lakes.ERASE, *lakes.EXPORT})) + r")(?!\w)")
    assert not subjects.search(output), "a subject id reached Airflow's output"
    assert lakes.KEY not in output
