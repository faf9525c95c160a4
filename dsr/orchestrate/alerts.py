"""Alerting through Airflow's usual channels: the DAGs' failure notifier, and the ``check_deadlines`` task.

**Notifier.** Every task of the dsr DAGs calls ``on_failure_callback`` when it fails. It is
``$DSR_ON_FAILURE`` (``package.module:name``, read where the DAGs are parsed): a BaseNotifier instance (e.g. one
of Airflow's Slack, SMTP or PagerDuty notifiers built in your own module), a BaseNotifier class (built with no
arguments) or any callable taking the task's context. Unset, it is ``LogNotifier``, which only logs.

**check_deadlines.** Fails (and so alerts) when a request is overdue, due within ``warn_days`` (the run Param,
default ``$DSR_WARN_DAYS``, else 7) or failed with no attempt left. Its log names each request by id with the
reason; never a subject id. It reads the control table and the audit log once (:func:`dsr.steps.status.load`).
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

__all__ = ["CHECK_OPTIONS", "check_deadlines", "deadline_problems", "named", "on_failure", "warn_days_param"]

log = logging.getLogger("dsr.dag")

CHECK_OPTIONS: dict[str, Any] = {
    "task_id": "check_deadlines",
    "doc_md": "Fail (and alert) when a request is overdue, due within `warn_days`, or failed with no attempt left; "
              "the log names the request ids and why. Runs beside the batch, never holds it up.",
}


def _log_notifier() -> Any:
    from airflow.sdk import BaseNotifier

    class LogNotifier(BaseNotifier):
        """The default notifier: one log line naming the DAG, the task and the run (no subject id reaches them)."""

        def notify(self, context: Any) -> None:
            ti = context.get("ti") or context.get("task_instance")
            log.error("dsr alert: task %s of DAG %s failed in run %s", getattr(ti, "task_id", "?"),
                      getattr(ti, "dag_id", "?"), context.get("run_id"))

    return LogNotifier


def named(variable: str) -> tuple[str, Any] | None:
    """The object ``$variable`` names (``package.module:name``) and that spec; None when it is unset.
    A malformed spec is a RuntimeError naming the variable (it is read where the DAGs are parsed)."""
    spec = os.environ.get(variable, "").strip()
    if not spec:
        return None
    module, _, name = spec.partition(":")
    if not module or not name:
        raise RuntimeError(f"{variable}={spec!r}: use package.module:name")
    return spec, getattr(importlib.import_module(module), name)


def on_failure() -> Any:
    """The failure callback of every task: ``$DSR_ON_FAILURE`` resolved, else a ``LogNotifier``."""
    found = named("DSR_ON_FAILURE")
    if found is None:
        return _log_notifier()()
    spec, target = found
    from airflow.sdk import BaseNotifier

    if isinstance(target, type) and issubclass(target, BaseNotifier):
        return target()
    if not callable(target):
        raise RuntimeError(f"DSR_ON_FAILURE={spec!r}: not a notifier or a callable")
    return target


def warn_days_param() -> dict[str, Any]:
    from airflow.sdk import Param

    return {"warn_days": Param(
        int(os.environ.get("DSR_WARN_DAYS", "7") or 7), type="integer", minimum=0, maximum=3650,
        title="Warn days", description="check_deadlines fails when a request is due within this many days.",
    )}


def deadline_problems(status: Any) -> list[str]:
    """One line per request that needs a person: its id, kind, status and why (pure)."""
    lines = [f"{r['request_id']} ({r['kind']}, {r['status']}): overdue since {r['due_at'][:16]} UTC"
             + (f"; last error: {r['error']}" if r.get("error") else "") for r in status.overdue]
    lines += [f"{r['request_id']} ({r['kind']}, {r['status']}): due {r['due_at'][:16]} UTC, within "
              f"{status.soon_days} day(s)" for r in status.due_soon]
    late = {r["request_id"] for r in status.overdue}
    lines += [f"{f['request_id']} ({f['kind']}, failed): no attempt left after {f['attempts']}: {f['error']}"
              for f in status.failed_final if f["request_id"] not in late]
    return [" ".join(line.split()) for line in lines]


def check_deadlines() -> dict[str, Any]:
    """The ``check_deadlines`` task: fails naming the requests that need a person; returns counts."""
    from airflow.sdk.exceptions import AirflowFailException

    from dsr.core.policy import load_policy, resolve_policy_path
    from dsr.orchestrate.task_context import final_errors, task_params
    from dsr.steps import status as backlog

    params = task_params()
    with final_errors():
        policy = load_policy(resolve_policy_path(params.get("policy") or None))
        s = backlog.load(policy, soon_days=int(params.get("warn_days", 7)))
    problems = deadline_problems(s)
    for line in problems:
        log.error("check_deadlines: %s", line)
    counts = {"overdue": len(s.overdue), "due_soon": len(s.due_soon), "failed_final": len(s.failed_final)}
    log.info("check_deadlines: %s", counts)
    if problems:
        raise AirflowFailException(
            f"{len(s.overdue)} request(s) overdue, {len(s.due_soon)} due within {s.soon_days} day(s), "
            f"{len(s.failed_final)} failed for good: " + "; ".join(problems)[:2000])
    return counts
