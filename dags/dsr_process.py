"""
### dsr_process — data-subject requests on the Delta Lake

Processes every pending data-subject request (GDPR Art. 15/20 exports and Art. 17 erasures) filed in the
dsr control table, once per run: **claim**, then one task per step of `dsr.steps.STEPS`, mapped per table
where the step fans out:

1. **claim** the pending (and retryable failed or expired) requests as one batch;
2. **export** — one mapped task per export-enabled table: one scan for all requested subjects;
3. **finish_exports** — write one export package per request; on success an `ExportReadyNotifier`
   (`dsr.orchestrate.export_notifier`, an Airflow `BaseNotifier`) tells the policy's webhook, or the channel a
   deployment plugs in (a subclass named by `DSR_EXPORT_NOTIFIER`), that the packages are ready (never the data);
4. **erase** — one mapped task per table: one Delta commit deleting, anonymising or retaining the rows;
5. **verify** — one mapped task per table: Great Expectations suites prove no erased id survives;
6. **complete** — mark the requests completed (or failed), write receipts and audit events;
7. **sweep** — apply every past erasure again to the files added since each table's last sweep (late or
   replayed rows, restored files), and in full to a table added to the policy (`dsr sweep`);
8. **purge** — once `purge_after_hours` has passed since an erasure's commit, physically remove the old
   files and log entries that still hold the person, and digest their id in the control table (`dsr purge`;
   runs when the batch completed or there was none; after a failed batch the next run purges).

Beside them, **check_deadlines** fails (and so alerts through the tasks' `on_failure_callback`, the notifier
named by `DSR_ON_FAILURE`) when a request is overdue, due within `warn_days` (a Param, default `DSR_WARN_DAYS`
or 7) or failed with no attempt left; its log names the request ids and why. **erase** and **sweep** emit an
Airflow Asset event per table they commit to (Asset URI: the table's storage URI, `file:///...` or `s3://...`;
extra: versions before and after, row and file counts), so DAGs scheduled on a table's Asset rerun after an
erasure.

The batch id is this DAG run's id (sanitised); XCom carries only table names and counts, never subject
ids or rows. `complete` runs whatever happened upstream and marks every request it could not finish as
failed; the next run claims it again, up to `max_attempts`. If a worker dies, the claim's lease
(`claim_ttl_minutes` in the policy) expires and the next run picks the requests up. Every step is
idempotent, so Airflow's own retries are safe.

Configuration (environment of the workers, or the trigger form): `DSR_POLICY` (policy YAML),
`DSR_ENGINE` (`delta-rs` or `spark`), `SPARK_REMOTE` (Spark Connect `sc://host:port`),
`DSR_PSEUDONYM_KEY` (the HMAC key; environment only, never a Param), `DSR_SCHEDULE` (default `@hourly`;
`none` for manual triggers only). To run the whole batch as one spark-submit instead, deploy
`spark_submit/dsr_process_spark_submit.py` in place of this file (dags/.airflowignore keeps it out).
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import dag, task

from dsr.orchestrate import airflow_dag as kit
from dsr.orchestrate import alerts, export_notifier, lineage
from dsr.orchestrate import sweep_tasks as sweeps
from dsr.steps.run import STEPS

kit.refuse_spark_submit_switch()


@dag(dag_id=Path(__file__).stem, **kit.dag_arguments(__doc__, extra_params=alerts.warn_days_param()))
def dsr_process() -> None:
    task(**alerts.CHECK_OPTIONS)(alerts.check_deadlines)()  # beside the batch: alerts, never holds it up
    batch = task(task_id="claim")(kit.claim)()  # one item per table: its name and the steps that process it
    previous = batch
    for index, step in enumerate(STEPS):
        run = task(**kit.task_options(index, step), **export_notifier.callbacks(step.name))(kit.step_task(step))
        current = run.expand(work=batch) if step.per_table else run()
        # every step also hangs on the claim, so a step after one skipped for an empty table list still runs
        [batch, previous] >> current
        previous = current
    # not steps of `dsr run`: the DAG sweeps (every past erasure, on the files added since) and purges (on its
    # window); a failed sweep leaves the purge for the next run
    swept = task(**sweeps.SWEEP_OPTIONS, outlets=lineage.outlets())(sweeps.sweep_all)()
    previous >> swept >> task(**kit.PURGE_OPTIONS)(kit.purge)()


dsr_process()
