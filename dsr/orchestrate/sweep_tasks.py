"""The sweep as Airflow tasks: the incremental sweep at the end of ``dsr_process``, and the ``dsr_backfill``
DAG a compliance officer triggers from the UI (tables, baseline, dry run, engine as typed Params).

Imported at DAG parse time: Airflow's SDK only; the sweep itself (deltalake, DataFusion, Great Expectations)
loads when a task runs. Tasks return table names and counts, never subject ids; the sweep id is derived from
the DAG run's id, so every task of a run writes under the same id (``dsr receipt SWEEP_ID``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from dsr.orchestrate import airflow_dag as kit
from dsr.orchestrate import lineage

__all__ = ["SWEEP_OPTIONS", "backfill_params", "backfill_summary", "backfill_table", "backfill_tables", "sweep_all"]

log = logging.getLogger("dsr.dag")

SWEEP_OPTIONS: dict[str, Any] = {
    "task_id": "sweep", "trigger_rule": "all_success",
    "doc_md": "Apply every past erasure again to the files added since each table's last sweep (late or "
              "replayed rows, restores); a table added to the policy is swept in full. Counts only.",
}


def _sweep_id() -> str:
    from airflow.sdk import get_current_context

    from dsr.steps.sweep_state import sweep_id_for

    return sweep_id_for(str(get_current_context()["run_id"]))


def _counts(t: dict[str, Any]) -> dict[str, Any]:
    keys = ("table", "strategy", "mode", "since_version", "files_live", "files_scanned", "files_matched", "rows",
            "entries", "entries_matched", "version_before", "version_after", "success", "suites", "error", "note")
    return {k: t.get(k) for k in keys}


def _fail_if(report: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    bad = [t.table for t in report.tables if t.error or not t.success]
    if bad:
        raise AirflowFailException(f"sweep {report.sweep_id}: {len(bad)} table(s) failed: {', '.join(bad)}; "
                                   f"see dsr receipt {report.sweep_id}")


def sweep_all() -> dict[str, Any]:
    """``dsr sweep`` (incremental) of every delete/anonymise table, as the task after ``complete``."""
    from dsr.steps import sweep as sweeping

    with kit.final_errors():
        policy = kit.task_policy()
        engine = kit.task_engine()
        try:
            report = sweeping.sweep(policy, engine, _sweep_id())
        finally:
            engine.close()
    out = {t.table: _counts(t.as_dict()) for t in report.tables}
    log.info("sweep %s: %s", report.sweep_id, out)
    for name, counts in out.items():
        lineage.publish(policy.table(name).uri, lineage.asset_extra(name, "sweep", counts, report.sweep_id))
    _fail_if(report)
    return out


# --- dsr_backfill ---------------------------------------------------------------------------------------------


def _policy_tables() -> list[str]:
    """The delete/anonymise tables of the policy the scheduler sees ($DSR_POLICY), for the form's pick list;
    empty when it cannot be read at parse time (the task checks the names it gets)."""
    try:
        from dsr.core.policy import load_policy, resolve_policy_path
        from dsr.steps.sweep import sweepable

        return sweepable(load_policy(resolve_policy_path(None)))
    except Exception:
        return []


TABLES_PARAM = "Tables (param \"tables\")"
"""How a bad table choice names where it came from (``dsr sweep`` says ``--table``)."""


def backfill_params() -> dict[str, Any]:
    """The trigger form of ``dsr_backfill``: tables (multi-select), baseline, dry run (on by default)."""
    from airflow.sdk import Param

    names = _policy_tables()
    pick: dict[str, Any] = {"examples": names} if names else {}  # the UI's multi-select list
    return {
        "tables": Param(
            [], type="array", items={"type": "string"}, title="Tables",
            description="Tables to sweep (none selected: every delete/anonymise table of the policy).", **pick,
        ),
        "since_version": Param(
            None, type=["null", "integer"], minimum=0, title="Since Delta version",
            description="Read the files added after this version. Empty: since each table's last sweep.",
        ),
        "since_date": Param(
            None, type=["null", "string"], format="date", title="Since date (UTC)",
            description="Read the files added after the version current at this date. Not with a version.",
        ),
        "full": Param(False, type="boolean", title="Full sweep", description="Read every live file."),
        "dry_run": Param(
            os.environ.get("DSR_BACKFILL_DRY_RUN", "true").lower() != "false", type="boolean", title="Dry run",
            description="Count the rows and files that would change; write nothing. Untick to apply.",
        ),
    }


def _window() -> Any:
    from dsr.cli.sweep import parse_since
    from dsr.errors import InputError
    from dsr.steps.sweep import Window

    p = kit.task_params()
    if p.get("since_version") is not None and p.get("since_date"):
        raise InputError("choose a since version or a since date, not both")
    version = p.get("since_version")
    return Window(full=bool(p.get("full")), since_version=None if version is None else int(version),
                  since=parse_since(p.get("since_date") or None))


def backfill_tables() -> list[str]:
    """The tables to sweep: the form's choice, checked against the policy (a bad name fails the run here,
    before any table is touched)."""
    from dsr.cli.sweep import check_tables
    from dsr.steps.sweep import sweepable

    with kit.final_errors():
        policy = kit.task_policy()
        _window()
        chosen = list(kit.task_params().get("tables") or [])
        names = check_tables(policy, chosen, TABLES_PARAM) if chosen else sweepable(policy)
        if not bool(kit.task_params().get("dry_run", True)):
            policy.pseudonym_key()
    log.info("backfill %s: %d table(s): %s", _sweep_id(), len(names), ", ".join(names))
    return names


def backfill_table(table: str) -> dict[str, Any]:
    """Sweep one table (a mapped task): returns its counts; fails when the table failed."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from dsr.core import lease
    from dsr.steps import sweep as sweeping

    get_current_context()["dsr_table"] = table  # type: ignore[typeddict-unknown-key]  # map_index_template
    dry_run = bool(kit.task_params().get("dry_run", True))
    with kit.final_errors():
        policy = kit.task_policy()
        window = _window()
        engine = kit.task_engine()
        try:
            with contextlib.nullcontext() if dry_run else lease.shared(policy, f"{_sweep_id()}.{table}", "sweep"):
                ctx = sweeping.load_context(policy, dry_run=dry_run)
                out = sweeping.sweep_table(policy, engine, _sweep_id(), table, ctx, window=window, dry_run=dry_run)
        finally:
            engine.close()
    counts = {"dry_run": dry_run, **_counts(out.as_dict())}
    log.info("backfill %s: %s", _sweep_id(), counts)
    if not dry_run:
        lineage.publish(policy.table(table).uri, lineage.asset_extra(table, "sweep", counts, _sweep_id()))
    if not out.success:
        raise AirflowFailException(f"sweep of table {table}: verification failed ({', '.join(out.suites)})")
    return counts


def backfill_summary(results: list[dict[str, Any]] | None, tables: list[str] | None) -> dict[str, Any]:
    """The backfill's counts, per table and in total, in the task log (what the compliance officer reads);
    fails when a table's sweep did not finish."""
    from airflow.sdk.exceptions import AirflowFailException

    from dsr.cli.sweep import table_line, total_line

    # by index: iterating Airflow's lazy sequence probes one element past its end (a logged 404)
    if tables is None:  # the tables task failed (a bad choice): nothing was swept, and the run shows it
        raise AirflowFailException(f"backfill {_sweep_id()}: no table was swept (see the tables task)")
    rows = [r for r in (results[i] for i in range(len(results))) if r] if results else []
    dry_run = bool(kit.task_params().get("dry_run", True))
    sweep_id = _sweep_id()
    for r in rows:
        log.info("%s", table_line(r, dry_run))
    total = sum(int(r.get("rows") or 0) for r in rows)
    log.info("%s", total_line(sweep_id, len(rows), total, dry_run))
    missing = sorted(set(tables or []) - {str(r["table"]) for r in rows})
    if missing:
        raise AirflowFailException(f"backfill {sweep_id}: table(s) not swept: {', '.join(missing)}")
    return {"sweep_id": sweep_id, "dry_run": dry_run, "tables": len(rows), "rows": total}
