"""One real ``airflow dags test dsr_process`` on a lake whose requests are due at once (``due_days: 0``):
``check_deadlines`` fails naming the request ids, the configured notifier is called, the erase tasks emit an
Asset event per erased table (versions and counts in its extra, no ids), and an analyst's DAG scheduled on the
``events`` table's Asset gets an asset-triggered run from the scheduler.

Airflow runs in subprocesses on a throw-away AIRFLOW_HOME (SQLite); the DAG folder holds dsr_process and the
analyst's DAG; the assertions read Airflow's metadata database directly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsr.core import control
from dsr.core.policy import load_policy
from dsr.orchestrate.lineage import asset_uri
from tests import lakes
from tests.invoke import dsr
from tests.leaks import Leaks
from tests.orchestrate.airflow_cli import airflow

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ERASE = ("1003", "1007")
ANALYST_DAG = '''
"""An analyst's aggregates over the events table, rebuilt after each erasure."""
import json

import pendulum
from airflow.sdk import Asset, dag, task


@dag(schedule=[Asset("{uri}")], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["analytics"])
def analyst_events():
    @task
    def rebuild(*, triggering_asset_events=None):
        for events in triggering_asset_events.values():
            for event in events:
                print("analyst rebuilds after", event.asset.uri, json.dumps(event.extra, sort_keys=True))
        return "rebuilt"

    rebuild()


analyst_events()
'''


@dataclass
class Ran:
    lake: lakes.Lake
    home: Path
    alerts: Path
    output: str
    returncode: int
    downstream: str  # the analyst task's output


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    root = tmp_path_factory.mktemp("alerts")
    lake = lakes.busy(root / "w")
    lake.policy_path.write_text(lake.policy_path.read_text() + "due_days: 0\n")
    for subject in ERASE:
        assert dsr("request", "erase", subject, env=lake.env).returncode == 0
    events_uri = load_policy(lake.policy_path).table("events").uri
    dags = root / "dags"
    dags.mkdir()
    (dags / "dsr_process.py").symlink_to(ROOT / "dags" / "dsr_process.py")
    (dags / "analyst_events.py").write_text(ANALYST_DAG.format(uri=asset_uri(events_uri)))
    home, alerts = root / "airflow_home", root / "alerts.jsonl"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DSR_", "SPARK_REMOTE"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False", "DSR_ENGINE": "delta-rs", "DSR_SCHEDULE": "none",
        "DSR_ON_FAILURE": "tests.orchestrate.notifier:FileNotifier", "DSR_TEST_ALERTS": str(alerts),
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        **lake.env,
    })
    for step in (["db", "migrate"], ["dags", "reserialize"]):
        done = airflow(step, env, timeout=180)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    test = airflow(["dags", "test", "dsr_process"], env, timeout=400)
    # the scheduler turns the queued asset event into the analyst DAG's run; its task then runs in that run
    # (a worker would need Airflow's API server: `tasks test` runs the task here, against the run's context)
    run_id = _scheduled_run(env, home / "airflow.db", "analyst_events")
    rebuild = airflow(["tasks", "test", "analyst_events", "rebuild", run_id], env, timeout=180)
    return Ran(lake, home, alerts, test.stdout + test.stderr, test.returncode,
               rebuild.stdout + rebuild.stderr)


def _scheduled_run(env: dict[str, str], db_path: Path, dag_id: str, timeout: float = 120) -> str:
    """Start the scheduler, wait until it has created a run of ``dag_id``, stop it; the run's id."""
    exe = str(Path(sys.executable).parent / "airflow")
    log = db_path.parent / "scheduler.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([exe, "scheduler"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            with sqlite3.connect(db_path, timeout=30) as db:
                runs = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (dag_id,)).fetchall()
            if runs:
                return str(runs[0][0])
            time.sleep(1)
        raise AssertionError(f"no run of {dag_id} from the scheduler: " + log.read_text()[-5000:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the scheduler we started, and its children
            try:  # it would wait for the task it handed to an executor with no API server to talk to
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


def _db(ran: Ran) -> sqlite3.Connection:
    return sqlite3.connect(ran.home / "airflow.db")


def test_check_deadlines_fails_naming_the_overdue_requests_and_the_run_still_erases(ran: Ran) -> None:
    requests = control.list_requests(load_policy(ran.lake.policy_path))
    assert {r.status for r in requests} == {"completed"}, ran.output[-5000:]
    with _db(ran) as db:
        states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'dsr_process' "
                                 "AND map_index = -1"))
    assert states["check_deadlines"] == "failed" and states["complete"] == "success", states
    for r in requests:  # pending, or running when the claim came first
        assert re.search(rf"check_deadlines: {r.request_id} \(erase, (pending|running)\): overdue since", ran.output)


def test_the_notifier_is_called_for_the_failed_task(ran: Ran) -> None:
    alerts = [json.loads(line) for line in ran.alerts.read_text().splitlines()]
    assert [(a["dag_id"], a["task_id"]) for a in alerts] == [("dsr_process", "check_deadlines")]


def test_erase_emits_an_asset_event_per_erased_table_with_versions_and_counts(ran: Ran) -> None:
    policy = load_policy(ran.lake.policy_path)
    with _db(ran) as db:
        rows = db.execute("SELECT a.uri, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id").fetchall()
    extras = {uri: json.loads(extra) for uri, extra in rows}
    erased = {t.name for t in policy.tables if t.erase != "retain"}
    assert set(extras) == {asset_uri(policy.table(name).uri) for name in erased}, extras
    events = extras[asset_uri(policy.table("events").uri)]
    assert events["table"] == "events" and events["operation"] == "erase"
    assert events["version_after"] == events["version_before"] + 1 and events["rows"] > 0
    assert events["files_rewritten"] >= 1
    leaks = Leaks(ERASE)
    assert not leaks.found_in(json.dumps(extras)) and "req_" not in json.dumps(extras)


def test_the_analysts_dag_scheduled_on_the_events_asset_runs_after_the_erasure(ran: Ran) -> None:
    policy = load_policy(ran.lake.policy_path)
    uri = asset_uri(policy.table("events").uri)
    with _db(ran) as db:
        runs = db.execute("SELECT run_type FROM dag_run WHERE dag_id = 'analyst_events'").fetchall()
        (state,) = db.execute("SELECT state FROM task_instance WHERE dag_id = 'analyst_events'").fetchone()
    assert runs == [("asset_triggered",)] and state == "success", ran.downstream[-5000:]
    seen = re.search(rf"analyst rebuilds after {re.escape(uri)} (\{{.*\}})", ran.downstream)
    assert seen is not None, ran.downstream[-5000:]
    extra = json.loads(seen.group(1))
    assert extra["table"] == "events" and extra["operation"] == "erase" and extra["rows"] > 0


def test_no_subject_id_reaches_airflows_output(ran: Ran) -> None:
    assert not Leaks(ERASE).found_in(ran.output)
