"""What the Airflow DAGs in ``dags/`` share: their arguments, the batch id, and one step of ``STEPS`` as a task.

``dags/dsr_process.py`` (one task per step, mapped per table) and ``dags/spark_submit/dsr_process_spark_submit.py`` (one
spark-submit of ``jobs/process.py``) are wiring only; everything here is imported at parse time, so it
imports Airflow's SDK and nothing heavier (the steps load deltalake, pyarrow and Great Expectations only when
a task runs). Nothing here puts personal data into XCom or logs: tasks return table names and counts, the
batch id is the DAG run's id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from dsr.orchestrate import alerts, lineage
from dsr.orchestrate.task_context import (
    batch_id,
    final_errors,
    safe_batch_id,
    task_engine,
    task_params,
    task_policy,
)
from dsr.steps.run import STEPS, Step

__all__ = [
    "NONE_FAILED",
    "batch_id",
    "claim",
    "dag_arguments",
    "final_errors",
    "purge",
    "refuse_spark_submit_switch",
    "safe_batch_id",
    "schedule",
    "step_task",
    "task_engine",
    "task_options",
    "task_params",
    "task_policy",
    "work_items",
]

log = logging.getLogger("dsr.dag")

# Runs when nothing upstream failed, even if a mapped upstream was skipped because its table list was empty.
NONE_FAILED = "none_failed_min_one_success"
# Mapped tasks of one step running at once in one DAG run (each opens its table and, if it writes, an engine).
MAX_TABLES_AT_ONCE = 4
# Steps that commit to data tables: their tasks emit an Asset event per table they change.
COMMITTING = ("erase",)


def schedule() -> str | None:
    """``$DSR_SCHEDULE`` (a cron expression or preset; ``none`` for manual triggers only), default hourly."""
    value = os.environ.get("DSR_SCHEDULE", "").strip() or "@hourly"
    return None if value.lower() in ("none", "manual") else value


def refuse_spark_submit_switch() -> None:
    """``DSR_SPARK_SUBMIT`` used to turn ``dsr_process`` into one spark-submit task. The spark-submit DAG is
    now its own file; a deployment still setting the variable gets this import error instead of silently
    running the steps as TaskFlow tasks where it expected spark-submit."""
    if os.environ.get("DSR_SPARK_SUBMIT", "").strip().lower() not in ("", "0", "false", "no", "off"):
        raise RuntimeError(
            "DSR_SPARK_SUBMIT is no longer read: deploy dags/spark_submit/dsr_process_spark_submit.py (DAG "
            "dsr_process_spark_submit) for spark-submit instead of dsr_process.py, and unset DSR_SPARK_SUBMIT"
        )


def dag_arguments(doc: str | None, *, engine_param: bool = True, scheduled: bool = True,
                  extra_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``@dag`` arguments the DAGs share: schedule (none when not ``scheduled``: manual triggers only),
    retries, one run at a time, the trigger form's Params (policy, engine when the DAG chooses one, Spark
    Connect address, then ``extra_params``), and the ``dsr_batch_id`` filter."""
    import pendulum
    from airflow.sdk import Param

    params: dict[str, Any] = {
        "policy": Param(
            os.environ.get("DSR_POLICY", "dsr.yml"), type="string", minLength=1,
            title="Policy file", description="Path of the dsr policy YAML, as the workers see it.",
        ),
    }
    if engine_param:
        params["engine"] = Param(
            os.environ.get("DSR_ENGINE", "delta-rs"), type="string", enum=["delta-rs", "spark"],
            title="Engine", description="delta-rs (in-process) or spark (classic or Spark Connect).",
        )
    params["spark_remote"] = Param(
        os.environ.get("SPARK_REMOTE") or None, type=["null", "string"],
        title="Spark Connect address", description="sc://host:port; only used with engine spark.",
    )
    params.update(extra_params or {})
    return {
        "doc_md": doc,
        "schedule": schedule() if scheduled else None,
        "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {
            "owner": "privacy-engineering",
            "retries": 2,
            "retry_delay": timedelta(minutes=1),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=15),
            "on_failure_callback": alerts.on_failure(),  # $DSR_ON_FAILURE, else a notifier that logs
        },
        "dagrun_timeout": timedelta(hours=6),
        "user_defined_filters": {"dsr_batch_id": safe_batch_id},
        "tags": ["dsr", "gdpr", "delta", "privacy"],
        "params": params,
    }


def task_options(index: int, step: Step) -> dict[str, Any]:
    """``@task`` options of step ``index`` of ``STEPS``: the first runs after a successful claim; the next ones
    also when an upstream mapped over an empty table list was skipped; the last (``always``) whatever happened,
    to settle every request. A step that fans out runs at most ``MAX_TABLES_AT_ONCE`` tables at once."""
    rule = "all_done" if step.always else ("all_success" if index == 0 else NONE_FAILED)
    options: dict[str, Any] = {"task_id": step.name, "trigger_rule": rule,
                               "doc_md": (step.fn.__doc__ or "").strip() or None}
    if step.name in COMMITTING:
        options["outlets"] = lineage.outlets()  # an Asset event per table it commits to (dsr.orchestrate.lineage)
    if step.per_table:
        options["max_active_tis_per_dagrun"] = MAX_TABLES_AT_ONCE
        options["map_index_template"] = "{{ dsr_table }}"  # the UI names each mapped instance by its table
    return options


def claim() -> list[dict[str, Any]]:
    """Claim the pending (and retryable failed or expired) requests as this DAG run's batch; skip the run when
    there are none. Returns the batch's work, one item per table: ``{"table": name, "steps": [the steps that
    process it]}``. Every step that fans out is mapped over this one list (Airflow maps only over a task's
    return value) and skips the tables it has nothing to do for."""
    from airflow.sdk.exceptions import AirflowSkipException

    from dsr.steps import claim_batch

    with final_errors():
        batch = claim_batch(task_policy(), batch_id())
    log.info("claim: run %s, %d request(s) (%d export, %d erase)", batch["run_id"], batch["requests"],
             batch["exports"], batch["erasures"])
    if not batch["requests"]:
        raise AirflowSkipException("no pending requests")
    return work_items(batch)


def work_items(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A claim result -> one item per table the batch touches, naming the steps of ``STEPS`` that process it
    (table names and step names only: this is an XCom)."""
    fanned = [s for s in STEPS if s.per_table]
    tables = list(dict.fromkeys(str(t) for s in fanned for t in batch[str(s.per_table)]))
    return [{"table": t, "steps": [s.name for s in fanned if t in batch[str(s.per_table)]]} for t in tables]


def _run(step: Step, table: str | None) -> dict[str, Any]:
    """Run one step (for one table when it fans out), with an engine only if it writes or reads tables; log its
    metrics."""
    from dsr import steps

    with final_errors():
        engine = task_engine() if step.engine or step.reads else None
        try:
            out = steps.call(step, task_policy(), batch_id(), engine, table)
        finally:
            if engine is not None:
                engine.close()
    log.info("%s: %s", f"{step.name} {table}" if table else step.name, out)
    return out


PURGE_OPTIONS: dict[str, Any] = {
    # after a batch that completed, or no batch at all (complete runs anyway); after a failed batch it is
    # upstream_failed, so the DAG run still shows the failure, and the next run purges
    "task_id": "purge", "trigger_rule": "all_success",
    "doc_md": "Physically remove what completed erasures left once `purge_after_hours` has passed (old files, "
              "log entries, deletion-vector rows), then digest their ids in the control table. Counts only.",
}


def purge() -> dict[str, Any]:
    """``dsr purge`` as a task: returns per table the versions made unreadable and the files removed (no ids);
    fails the task when a table failed or residue is left."""
    from airflow.sdk.exceptions import AirflowFailException

    from dsr.steps import purge as purging

    with final_errors():
        policy = task_policy()
        engine = task_engine(spark_only=True)
        try:
            report = purging.purge(policy, engine=engine)
        finally:
            if engine is not None:
                engine.close()
    out = {t.table: {k: v for k, v in t.as_dict().items() if k != "requests"} for t in report.tables}
    log.info("purge: %s", out)
    if report.exit_code != 0:
        raise AirflowFailException(f"purge: {sum(1 for t in report.tables if t.error or t.residue)} table(s) failed "
                                   "or kept residue; see `dsr purge --dry-run` and `dsr residue`")
    return out


def step_task(step: Step) -> Callable[..., Any]:
    """The Python callable of ``step``'s task: ``(work)``, one item of the claim's list, for a step that fans out
    (it returns the table, or skips a table it has nothing to do for),
    ``()`` otherwise; the ``always`` step fails the task when a request failed (the run shows red) and returns
    the run's counts."""
    if step.per_table:
        def per_table(work: dict[str, Any]) -> str:
            from airflow.sdk import get_current_context
            from airflow.sdk.exceptions import AirflowSkipException

            table = str(work["table"])
            get_current_context()["dsr_table"] = table  # type: ignore[typeddict-unknown-key]  # map_index_template
            if step.name not in work["steps"]:
                raise AirflowSkipException(f"{step.name}: nothing to do in table {table} for this batch")
            out = _run(step, table)
            if step.name in COMMITTING:
                extra = lineage.asset_extra(table, step.name, out, batch_id())
                lineage.publish(task_policy().table(table).uri, extra)
            return table

        return per_table
    if step.always:
        def settle() -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException

            summary = _run(step, None)
            if int(summary.get("exit_code", 0)) != 0:
                raise AirflowFailException(
                    f"batch {batch_id()}: {summary.get('failed', '?')} request(s) failed; "
                    "see `dsr requests --status failed`"
                )
            return {k: summary[k] for k in ("run_id", "completed", "failed") if k in summary}

        return settle

    def once() -> None:
        _run(step, None)

    return once
