"""
### dsr_process — data-subject requests on the Delta Lake

Processes every pending data-subject request (GDPR Art. 15/20 exports and Art. 17 erasures) filed in the
dsr control table, once per run:

1. **claim** the pending (and retryable failed or expired) requests as one batch;
2. **export** — one mapped task per export-enabled table: one scan for all requested subjects;
3. **finish_exports** — write one export document per request;
4. **erase** — one mapped task per table: one Delta commit deleting, anonymising or retaining the rows;
5. **verify** — one mapped task per table: Great Expectations suites prove no erased id survives;
6. **complete** — mark the requests completed (or failed), write receipts and audit events.

The batch id is this DAG run's id (sanitised); XCom carries only table names and counts, never subject
ids or rows. `complete` runs whatever happened upstream and marks every request it could not finish as
failed; the next run claims it again, up to `max_attempts`. If a worker dies, the claim's lease
(`claim_ttl_minutes` in the policy) expires and the next run picks the requests up. Every step is
idempotent, so Airflow's own retries are safe.

Configuration (environment of the workers, or the trigger form): `DSR_POLICY` (policy YAML),
`DSR_ENGINE` (`delta-rs` or `spark`), `SPARK_REMOTE` (Spark Connect `sc://host:port`),
`DSR_PSEUDONYM_KEY` (the HMAC key; environment only, never a Param), `DSR_SCHEDULE` (default `@hourly`;
`none` for manual triggers only).

**spark-submit mode.** With `DSR_SPARK_SUBMIT=1` where the DAG is parsed, the DAG is one task, `spark_submit`
(SparkSubmitOperator, from apache-airflow-providers-apache-spark), that submits `jobs/process.py` (or
`DSR_SPARK_APPLICATION`) through the Spark connection `DSR_SPARK_CONN_ID` (default `spark_default`):
`process.py --policy <policy> --run-id <batch id> --remote <spark_remote>`. The job runs the whole batch
(`dsr.steps.run`) on the Spark engine: on Spark Connect when `spark_remote` is set (give the connection the
master `local[*]`: spark-submit then only starts the driver, which connects), else on the connection's
cluster with delta-spark (`DSR_SPARK_PACKAGES`). The pseudonym key never goes into the command line or a
templated field: spark-submit inherits it from the worker's environment (client mode), a cluster-mode driver
gets it from the cluster's own secrets. `engine` is ignored in this mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

# Runs when nothing upstream failed, even if a mapped upstream was skipped because its table list was empty.
_NONE_FAILED = "none_failed_min_one_success"


def _schedule() -> str | None:
    """``$DSR_SCHEDULE`` (a cron expression or preset; ``none`` for manual triggers only), default hourly."""
    value = os.environ.get("DSR_SCHEDULE", "").strip() or "@hourly"
    return None if value.lower() in ("none", "manual") else value


def _spark_submit() -> bool:
    """``$DSR_SPARK_SUBMIT`` set (and not 0/false/no/off): run the batch as one spark-submit of jobs/process.py."""
    return os.environ.get("DSR_SPARK_SUBMIT", "").strip().lower() not in ("", "0", "false", "no", "off")


def _spark_application() -> str:
    """The spark-submit application: ``$DSR_SPARK_APPLICATION``, else this repository's ``jobs/process.py``."""
    default = Path(__file__).resolve().parent.parent / "jobs" / "process.py"
    return os.environ.get("DSR_SPARK_APPLICATION", "").strip() or str(default)


def _params() -> dict[str, Any]:
    from airflow.sdk import get_current_context

    return dict(get_current_context()["params"])


def _policy() -> Any:
    from dsr.core.policy import check_against_lake, load_policy, resolve_policy_path

    policy = load_policy(resolve_policy_path(_params().get("policy") or None))
    check_against_lake(policy)
    return policy


def _engine() -> Any:
    from dsr.engines import make_engine

    params = _params()
    name = params.get("engine") or None
    remote = params.get("spark_remote") or None
    return make_engine(name, remote=remote if name in (None, "spark") else None)


@contextmanager
def _final_errors() -> Iterator[None]:
    """A bad policy or input, or a failed verification, fails the task at once: a retry would fail the same way.

    dsr error messages name tables, columns and request ids, never subject ids; other errors are re-raised
    with the batch's subject ids scrubbed (``dsr.steps.safe_error``).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from dsr.errors import InputError, VerificationError

    try:
        yield
    except (InputError, VerificationError) as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        # anything else (I/O, engine) is retried by Airflow, with subject ids scrubbed from its message
        from dsr.steps import safe_error

        try:
            policy = _policy()
        except Exception:
            policy = None
        raise safe_error(exc, policy, _batch_id()) from None


def _batch_id() -> str:
    """The dsr run (batch) id of this DAG run: Airflow's run id made safe for paths and Delta metadata.

    Every task derives it from its own context, so XCom needs to carry only table names.
    """
    from airflow.sdk import get_current_context

    return _safe_batch_id(str(get_current_context()["run_id"]))


def _safe_batch_id(run_id: str) -> str:
    """Airflow run id -> dsr batch id (also the Jinja filter ``dsr_batch_id`` of the spark-submit task)."""
    import re

    return "af_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_")[:120]


def _step(name: str, table: str | None = None) -> dict[str, Any]:
    """Run one step of ``dsr.steps.STEPS`` (for one table when it fans out), with an engine only if it writes."""
    from dsr import steps

    step = next(s for s in steps.STEPS if s.name == name)
    with _final_errors():
        engine = _engine() if step.engine else None
        try:
            out = steps.call(step, _policy(), _batch_id(), engine, table)
        finally:
            if engine is not None:
                engine.close()
    _log(f"{name} {table}" if table else name, out)
    return out


def _log(step: str, metrics: dict[str, Any]) -> None:
    """Log a step's metrics (counts, versions, table names: never subject ids)."""
    import logging

    logging.getLogger("dsr.dag").info("%s: %s", step, metrics)


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=_schedule(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "privacy-engineering",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
    },
    dagrun_timeout=timedelta(hours=6),
    user_defined_filters={"dsr_batch_id": _safe_batch_id},
    tags=["dsr", "gdpr", "delta", "privacy"],
    params={
        "policy": Param(
            os.environ.get("DSR_POLICY", "dsr.yml"), type="string", minLength=1,
            title="Policy file", description="Path of the dsr policy YAML, as the workers see it.",
        ),
        "engine": Param(
            os.environ.get("DSR_ENGINE", "delta-rs"), type="string", enum=["delta-rs", "spark"],
            title="Engine", description="delta-rs (in-process) or spark (classic or Spark Connect).",
        ),
        "spark_remote": Param(
            os.environ.get("SPARK_REMOTE") or None, type=["null", "string"],
            title="Spark Connect address", description="sc://host:port; only used with engine spark.",
        ),
    },
)
def dsr_process() -> None:
    if _spark_submit():
        _submit_batch()
        return

    @task(multiple_outputs=False)
    def claim() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from dsr.steps import claim_batch

        with _final_errors():
            batch = claim_batch(_policy(), _batch_id())
        out = {
            "run_id": str(batch["run_id"]),
            "export_tables": [str(t) for t in batch["export_tables"]],
            "erase_tables": [str(t) for t in batch["erase_tables"]],
            "requests": int(batch["requests"]),
        }
        _log("claim", out)
        if out["requests"] == 0:
            raise AirflowSkipException("no pending requests")
        return out

    @task
    def tables_to_export(batch: Any) -> list[str]:
        return list(batch["export_tables"])

    @task
    def tables_to_erase(batch: Any) -> list[str]:
        return list(batch["erase_tables"])

    @task(max_active_tis_per_dagrun=4)
    def export(table: str) -> str:
        _step("export", table)
        return table

    @task(trigger_rule=_NONE_FAILED)
    def finish_exports() -> None:
        _step("finish_exports")

    @task(trigger_rule=_NONE_FAILED, max_active_tis_per_dagrun=4)
    def erase(table: str) -> str:
        _step("erase", table)
        return table

    @task(trigger_rule=_NONE_FAILED, max_active_tis_per_dagrun=4)
    def verify(table: str) -> str:
        _step("verify", table)
        return table

    @task(trigger_rule="all_done", multiple_outputs=False)
    def complete() -> dict[str, Any]:
        # Runs whatever happened upstream (all_done): requests whose tables were not all erased and verified
        # are marked failed now, so the next run retries them (up to max_attempts).
        from airflow.sdk.exceptions import AirflowFailException

        batch_id = _batch_id()
        summary = _step("complete")
        if int(summary.get("exit_code", 0)) != 0:
            raise AirflowFailException(
                f"batch {batch_id}: {summary.get('failed', '?')} request(s) failed; "
                "see `dsr requests --status failed`"
            )
        return {k: summary[k] for k in ("run_id", "completed", "failed") if k in summary}

    batch = claim()
    to_export = tables_to_export(batch)
    exports_done = finish_exports()
    [to_export, export.expand(table=to_export)] >> exports_done
    to_erase = tables_to_erase(batch)
    exports_done >> to_erase
    erased = erase.expand(table=to_erase)
    verified = verify.expand(table=to_erase)
    erased >> verified >> complete()


def _submit_batch() -> None:
    """spark-submit mode: one task submits jobs/process.py, the whole batch, through the Spark connection.

    Only ids and paths go on the command line: the policy, the batch id (the run id, sanitised as the
    TaskFlow steps do) and the Spark Connect address. The pseudonym key and storage credentials stay in the
    environment spark-submit inherits from the worker (client mode), never in args, conf or env_vars, which
    are rendered, shown in the UI and put on the command line. An empty ``--remote`` means classic Spark.
    """
    try:
        from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
    except ImportError as exc:
        raise ImportError(
            "DSR_SPARK_SUBMIT is set but the Spark provider is missing: "
            "pip install 'apache-airflow-providers-apache-spark>=6,<7' (or dsr-lake[airflow])"
        ) from exc

    python = os.environ.get("DSR_SPARK_PYTHON", "").strip()  # the driver's python, if not the worker's default
    SparkSubmitOperator(
        task_id="spark_submit",
        conn_id=os.environ.get("DSR_SPARK_CONN_ID", "").strip() or "spark_default",
        application=_spark_application(),
        application_args=[
            "--policy", "{{ params.policy }}",
            "--run-id", "{{ run_id | dsr_batch_id }}",
            "--remote", "{{ params.spark_remote or '' }}",
        ],
        name="dsr_process",
        packages=os.environ.get("DSR_SPARK_PACKAGES", "").strip() or None,
        env_vars={"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python} if python else None,
        verbose=False,
    )


dsr_process()
