"""
### dsr_process_spark_submit — the whole batch as one spark-submit

Processes every pending data-subject request once per run, like `dsr_process`, as one task, `spark_submit`
(SparkSubmitOperator, from apache-airflow-providers-apache-spark), that submits `jobs/process.py` (or
`DSR_SPARK_APPLICATION`) through the Spark connection `DSR_SPARK_CONN_ID` (default `spark_default`):
`process.py --policy <policy> --run-id <batch id> --remote <spark_remote>`, that is
`dsr run --engine spark`. With `spark_remote` set it runs on Spark Connect (give the connection the master
`local[*]`: spark-submit then only starts the driver, which connects); else on the connection's cluster with
delta-spark (`DSR_SPARK_PACKAGES`). The batch id is this DAG run's id, sanitised as `dsr_process` does.

The pseudonym key never goes into the command line or a templated field: spark-submit inherits it from the
worker's environment (client mode), a cluster-mode driver gets it from the cluster's own secrets.

Beside it, **check_deadlines** alerts on overdue requests as in `dsr_process` (see there). Deploy this file or
`dsr_process.py`, not both: each would claim requests on its own schedule (`DSR_SCHEDULE`, default `@hourly`).
`dags/.airflowignore` keeps this folder out when `dags_folder` is `dags/`; to deploy this shape from there,
make that file name `dsr_process.py` instead of `spark_submit/`. Settings read where the DAG is parsed:
`DSR_SPARK_CONN_ID`, `DSR_SPARK_APPLICATION`, `DSR_SPARK_PACKAGES`, `DSR_SPARK_PYTHON` (the driver's python).
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import dag, task

from dsr.orchestrate import airflow_dag as kit
from dsr.orchestrate import alerts

try:
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
except ImportError as exc:
    raise ImportError(
        "dsr_process_spark_submit needs the Spark provider: "
        "pip install 'apache-airflow-providers-apache-spark>=6,<7' (or dsr-lake[airflow])"
    ) from exc


def _setting(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


@dag(dag_id=Path(__file__).stem,
     **kit.dag_arguments(__doc__, engine_param=False, extra_params=alerts.warn_days_param()))
def dsr_process_spark_submit() -> None:
    task(**alerts.CHECK_OPTIONS)(alerts.check_deadlines)()  # beside the batch: alerts, never holds it up
    # Only ids and paths go on the command line: the policy, the batch id and the Spark Connect address (empty
    # means classic Spark). Credentials stay in the environment spark-submit inherits, never in args, conf or
    # env_vars, which are rendered, shown in the UI and put on the command line.
    python = _setting("DSR_SPARK_PYTHON")
    application = _setting("DSR_SPARK_APPLICATION") or str(Path(__file__).resolve().parents[2] / "jobs" / "process.py")
    SparkSubmitOperator(
        task_id="spark_submit",
        conn_id=_setting("DSR_SPARK_CONN_ID") or "spark_default",
        application=application,
        application_args=[
            "--policy", "{{ params.policy }}",
            "--run-id", "{{ run_id | dsr_batch_id }}",
            "--remote", "{{ params.spark_remote or '' }}",
        ],
        name="dsr_process",
        packages=_setting("DSR_SPARK_PACKAGES"),
        env_vars={"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python} if python else None,
        verbose=False,
    )


dsr_process_spark_submit()
