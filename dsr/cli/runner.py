"""``dsr run`` and ``dsr verify``: build the engine, run the steps, print the outcome."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dsr.core.masks import Strategy
from dsr.core.policy import Policy

if TYPE_CHECKING:
    from dsr.engines.reading import Reader

__all__ = ["cli_run", "cli_verify", "verify_all"]


def cli_run(policy: Policy, *, engine: str | None, remote: str | None, run_id: str | None = None,
            as_json: bool, quiet: bool = False) -> int:
    from dsr import steps
    from dsr.cli.progress import configure
    from dsr.engines import make_engine

    configure(quiet=quiet)
    eng = make_engine(engine, remote=remote)
    try:
        report = steps.run(policy, eng, run_id=run_id)
        swept = _first_sweeps(policy, eng)
    finally:
        eng.close()
    if as_json:
        print(json.dumps({**report.as_dict(), "first_sweeps": swept}, indent=2, default=str))
    else:
        s = report.summary
        c = report.claimed
        print(f"run {report.run_id} ({report.engine}): {c['requests']} request(s) claimed "
              f"({c['exports']} export, {c['erasures']} erase); "
              f"{s.get('completed', 0)} completed, {s.get('failed', 0)} failed")
        for e in report.errors:
            print(f"  error: {e}")
        if swept:
            print(f"  {swept['note']}")
    failed_sweep = swept is not None and swept.get("exit_code", 0) != 0
    return report.exit_code or (1 if failed_sweep else 0)


def _first_sweeps(policy: Policy, engine: Any) -> dict[str, Any] | None:
    """The tables pending their first sweep (added to the policy after erasures) are swept in full by the run
    that finds them; without the key the run says so and leaves them to ``dsr sweep``."""
    from dsr.errors import PolicyError
    from dsr.steps import sweep as sweeping
    from dsr.steps.sweep_pending import pending_tables
    from dsr.steps.sweep_state import new_sweep_id

    pending = pending_tables(policy, record=True)
    if not pending:
        return None
    try:
        policy.pseudonym_key()
    except PolicyError:
        return {"tables": sorted(pending), "exit_code": 1,
                "note": f"{len(pending)} table(s) pending their first sweep ({', '.join(sorted(pending))}): set "
                        f"${policy.pseudonym_key_env} and run dsr sweep"}
    report = sweeping.sweep(policy, engine, new_sweep_id(), tables=sorted(pending))
    rows = sum(t.rows for t in report.tables)
    return {**report.as_dict(), "note": f"first sweep {report.sweep_id} of {', '.join(sorted(pending))}: "
                                        f"{rows} row(s) of past erasures erased (dsr receipt {report.sweep_id})"}


def verify_all(policy: Policy, reader: Reader | None = None) -> list[dict[str, Any]]:
    """Re-run the suites of every delete/anonymise table for all completed erasures, reading each table back
    with ``reader`` (the access layer in this process by default; an engine's to read on the cluster). A table
    that cannot be read fails its check (a blind check is never a pass)."""
    from dsr.core import control
    from dsr.errors import TableError
    from dsr.verify.checks import TableCheck, check_table

    subjects = [(r.request_id, r.ids) for r in control.list_requests(policy, status="completed")
                if r.kind == "erase" and not r.minimised]
    checks = []
    for t in policy.tables:
        if t.erase is Strategy.RETAIN:
            continue
        try:
            checks.append((check_table(policy, t, subjects, reader=reader) if reader else
                           check_table(policy, t, subjects)).as_dict())
        except TableError as exc:
            checks.append(TableCheck(t.name, success=False, notes=[str(exc)]).as_dict())
    return checks


def cli_verify(policy: Policy, *, engine: str | None, remote: str | None, as_json: bool) -> int:
    """Exit 0 when every table verifies, 1 when one does not. ``--engine``/``--remote``, when given, must name an
    engine and, for Spark Connect, a server that answers: else one line and exit 2, as for ``dsr run``. Without
    them the tables are read in this process (delta-rs); with Spark, the tables are read on the cluster and
    checked against the files delta-rs lists (:mod:`dsr.verify.evidence`)."""
    from dsr.cli.options import check_engine_args
    from dsr.cli.progress import configure
    from dsr.engines import engine_name, make_engine

    configure()
    if engine or remote:
        check_engine_args(engine, remote)
    if engine_name(engine, remote) == "spark":
        spark = make_engine("spark", remote=remote)
        try:
            checks = verify_all(policy, spark.reader)
        finally:
            spark.close()
    else:
        checks = verify_all(policy)
    ok = all(c["success"] for c in checks)
    if as_json:
        print(json.dumps({"success": ok, "tables": checks}, indent=2))
    else:
        for c in checks:
            bad = [s["suite"] for s in c["suites"] if not s["success"]] or c["notes"][:1]
            print(f"{c['table']:24} {'OK' if c['success'] else 'FAILED: ' + ', '.join(bad)}")
        print("verify: all tables OK" if ok else "verify: FAILED — an erased subject survives, a mask is missing "
              "or a table could not be read")
    return 0 if ok else 1
