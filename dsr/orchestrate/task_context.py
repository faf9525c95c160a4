"""What a running task knows: its Params, the policy and engine they name, the batch id of its DAG run, and how
its errors reach Airflow. Imported at parse time (Airflow's SDK only); dsr's heavy parts load when a task runs.

Inside a task body the context is Airflow's current one. A callback (``on_success_callback``, a notifier) runs
after the task, outside it, where ``get_current_context`` finds nothing: it passes the context Airflow hands it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["batch_id", "final_errors", "safe_batch_id", "task_engine", "task_params", "task_policy"]


def safe_batch_id(run_id: str) -> str:
    """Airflow run id -> dsr batch id, safe for paths and Delta metadata (also the Jinja filter
    ``dsr_batch_id`` of the spark-submit DAG, so both DAGs name a run's batch the same way)."""
    return "af_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_")[:120]


def _context(context: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if context is not None:
        return context
    from airflow.sdk import get_current_context

    return get_current_context()


def task_params(context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run's Params, from ``context`` (a callback's), else the running task's."""
    return dict(_context(context)["params"])


def task_policy(context: Mapping[str, Any] | None = None) -> Any:
    """The policy the run's Params name, its tables named in the Spark catalog resolved through the run's Spark
    engine (refused on delta-rs), checked against the lake (``context``: as for :func:`task_params`)."""
    from dsr.core.policy import check_against_lake, load_policy, resolve_policy_path
    from dsr.core.policy_catalog import resolve_for

    params = task_params(context)
    policy = load_policy(resolve_policy_path(params.get("policy") or None))
    name, remote = _engine_params(params)
    policy = resolve_for(policy, engine=name, remote=remote, command="the DAG's tasks")
    check_against_lake(policy)
    return policy


def _engine_params(params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(engine, Spark Connect address) from the run's Params: the address only with engine spark (or none)."""
    name = params.get("engine") or None
    remote = params.get("spark_remote") or None
    return name, (remote if name in (None, "spark") else None)


def task_engine(*, spark_only: bool = False) -> Any:
    """The run's engine (its params, else $DSR_ENGINE / $SPARK_REMOTE); ``spark_only``: None unless it is
    Spark (the purge needs an engine only for Spark's REORG)."""
    from dsr.engines import engine_name, make_engine

    name, remote = _engine_params(task_params())
    if spark_only and engine_name(name, remote) != "spark":
        return None
    return make_engine(name, remote=remote)


def batch_id(context: Mapping[str, Any] | None = None) -> str:
    """The dsr batch id of the DAG run of ``context`` (a callback's), else of the running task. Every task
    derives it from its own context, so XCom needs to carry only table names."""
    return safe_batch_id(str(_context(context)["run_id"]))


@contextmanager
def final_errors() -> Iterator[None]:
    """A bad policy or input, or a failed verification, fails the task at once: a retry would fail the same way.

    dsr error messages name tables, columns and request ids, never subject ids; other errors are re-raised
    with the batch's subject ids scrubbed (``dsr.steps.safe_error``) and retried by Airflow.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from dsr.errors import DsrError, InputError, VerificationError

    try:
        yield
    except (InputError, VerificationError) as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
    except DsrError:
        raise  # its text names no subject; retried (a lease another command holds, a lost commit race)
    except Exception as exc:
        from dsr.steps import safe_error

        try:
            policy = task_policy()
        except Exception:
            policy = None
        raise safe_error(exc, policy, batch_id()) from None
