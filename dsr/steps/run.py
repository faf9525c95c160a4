"""The steps of a run, declared once, and ``run``: every step in order, in one process.

``STEPS`` is what ``dsr run``, the Airflow DAG (one task per step, mapped per table where a step fans out),
the benchmark and the resume test iterate. Each step is a function of the policy, the run id, the engine
when it writes, and the table when it fans out; state passes through the control table and the audit log,
never through return values, so each step can be retried on its own. Steps return small dicts of counts
(never subject ids).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dsr.core import control, lease
from dsr.core.policy import Policy
from dsr.delta import access, opened
from dsr.engines.base import Engine
from dsr.errors import scrub
from dsr.steps import progress
from dsr.steps.batch import Batch
from dsr.steps.claim import claim_batch
from dsr.steps.complete import complete_batch
from dsr.steps.erase import erase_table
from dsr.steps.export import export_table, finish_exports
from dsr.steps.resolve import resolve_identities
from dsr.steps.verify import verify_table

__all__ = ["STEPS", "RunReport", "Step", "call", "run"]

log = logging.getLogger("dsr.steps")


@dataclass(frozen=True)
class Step:
    """One step after the claim.

    ``per_table``: the key of the claim result listing the tables it fans out over ('export_tables' or
    'erase_tables'), None for a step that runs once. ``engine``: it needs the engine (it writes data tables, or
    reads them where the engine reads).
    ``reads``: it may read data tables (the near-match scan), given the engine's reader as ``reader``.
    ``always``: it runs whatever happened before it (the last step, which settles every request).
    """

    name: str
    fn: Callable[..., dict[str, Any]]
    per_table: str | None = None
    engine: bool = False
    reads: bool = False
    always: bool = False


STEPS: tuple[Step, ...] = (
    Step("resolve", resolve_identities, reads=True),
    Step("export", export_table, per_table="export_tables", engine=True),
    Step("finish_exports", finish_exports, reads=True),
    Step("erase", erase_table, per_table="erase_tables", engine=True),
    Step("verify", verify_table, per_table="erase_tables", engine=True),
    Step("complete", complete_batch, always=True, reads=True),
)


def call(step: Step, policy: Policy, run_id: str, engine: Engine | None = None, table: str | None = None
         ) -> dict[str, Any]:
    """Run one step (for one table, when it fans out), its tables opened once (:func:`opened.shared`)."""
    args: list[Any] = [policy]
    if step.engine:
        if engine is None:
            raise ValueError(f"step {step.name} needs an engine")
        args.append(engine)
    args.append(run_id)
    lease.renew(policy, run_id, "run")  # taken by the claim; in a DAG, tasks may be hours apart
    if step.per_table:
        args.append(table)
    extra = {"reader": engine.reader} if step.reads and engine is not None else {}
    with opened.shared():
        return step.fn(*args, **extra)


@dataclass
class RunReport:
    run_id: str
    engine: str
    claimed: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.errors or self.summary.get("exit_code", 0) else 0

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "engine": self.engine, "claimed": self.claimed, "steps": self.steps,
                "errors": self.errors, "summary": self.summary, "exit_code": self.exit_code}


def run(policy: Policy, engine: Engine, *, run_id: str | None = None, now: dt.datetime | None = None) -> RunReport:
    """Process every claimable request once: the claim, then every step of ``STEPS`` in order. A step that
    fails is recorded (its error scrubbed of subject ids) and the run goes on to settle what it can. Each table
    is opened once for the whole run, then brought up to date (:func:`opened.shared`)."""
    rid = control.check_run_id(run_id) if run_id else control.new_run_id()
    with opened.shared():
        try:
            return _run(policy, engine, rid, now)
        finally:
            lease.release(policy, rid)  # the completion gave it back, unless the run stopped before it


def _run(policy: Policy, engine: Engine, run_id: str, now: dt.datetime | None) -> RunReport:
    claimed = claim_batch(policy, run_id, now=now, in_process=True)
    rid = claimed["run_id"]
    report = RunReport(run_id=rid, engine=engine.name, claimed=claimed)
    if not claimed["requests"]:
        report.summary = {"run_id": rid, "completed": 0, "failed": 0, "exit_code": 0}
        return report
    subjects = Batch.load(policy, rid).subjects
    for step in STEPS:
        for table in claimed[step.per_table] if step.per_table else [None]:
            name = f"{step.name} {table}" if table else step.name
            if table:
                progress.started(step.name, table)
            try:
                out = call(step, policy, rid, engine, table)
            except Exception as exc:  # recorded, scrubbed, and the run goes on to complete what it can
                msg = scrub(f"{name}: {access.error_line(exc)}", subjects)
                log.error("run %s: %s", rid, msg)
                report.errors.append(msg)
                continue
            if table:
                progress.finished(step.name, table, out, out.get("refused"))
            if step.always:
                report.summary = out
            else:
                report.steps.append({"step": name, **out})
                if out.get("refused"):
                    report.errors.append(f"{name}: {out['refused']}")
    return report
