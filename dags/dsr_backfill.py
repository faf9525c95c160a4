"""
### dsr_backfill — apply past erasures again, on demand

Triggered by hand (no schedule), by a compliance officer or a data engineer, from the Airflow UI's trigger
form: every completed erasure is applied again to the chosen tables, so erased people whose rows came back
(late or replayed data, a table restored from a backup, a table added to the policy) are erased again.

Trigger form:
- **Tables** — pick from the policy's delete/anonymise tables; none picked: all of them.
- **Since Delta version** / **Since date** — read only the files added after that version (or after the
  version current at that date). Empty: since each table's last sweep. **Full sweep** reads every file.
- **Dry run** (ticked by default) — count the rows and files that would change and write nothing. Untick it
  to apply.
- **Engine** — delta-rs (in-process) or spark (with the Spark Connect address).

Tasks: **tables** (checks the choice), **sweep** (one mapped task per table: one Delta commit, verified by
the Great Expectations suites), **summary** (the counts per table and in total, in its log). A run's sweep id
is derived from its run id: `dsr receipt SWEEP_ID` shows what it did; the audit log has a `table_swept` event
per table. No subject id reaches XCom or the logs: erased people are matched by keyed digests
(`DSR_PSEUDONYM_KEY` on the workers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import dag, task

from dsr.orchestrate import airflow_dag as kit
from dsr.orchestrate import lineage
from dsr.orchestrate import sweep_tasks as sweeps


@dag(dag_id=Path(__file__).stem,
     **kit.dag_arguments(__doc__, scheduled=False, extra_params=sweeps.backfill_params()))
def dsr_backfill() -> None:
    tables = task(task_id="tables")(sweeps.backfill_tables)()
    swept = task(task_id="sweep", max_active_tis_per_dagrun=kit.MAX_TABLES_AT_ONCE, outlets=lineage.outlets(),
                 map_index_template="{{ dsr_table }}")(sweeps.backfill_table).expand(table=tables)
    summary: Any = task(task_id="summary", trigger_rule="all_done")(sweeps.backfill_summary)
    summary(swept, tables)


dsr_backfill()
