"""``dsr sweep``: apply every past erasure again to the chosen tables; ``dsr receipt SWEEP_ID`` for a sweep."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from dsr.core.policy import Policy
from dsr.errors import InputError

__all__ = ["check_tables", "cli_sweep", "parse_since", "print_sweep_receipt", "table_line", "total_line"]


def parse_since(text: str | None) -> dt.datetime | None:
    """``--since``: an ISO date or timestamp (UTC unless it names an offset). InputError otherwise."""
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--since {text!r}: not an ISO date or timestamp (e.g. 2026-11-01 or "
                         "2026-11-01T08:00:00Z)") from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def check_tables(policy: Policy, names: Sequence[str], option: str = "--table") -> list[str]:
    """The chosen tables, each once; InputError naming ``option`` (``--table``, or the DAG's param) for a name
    that is not a table of the policy or is retained (a sweep never touches a retained table), offering only
    the tables a sweep can apply erasures to."""
    from dsr.steps.sweep import sweepable

    known = {t.name for t in policy.tables}
    can = sweepable(policy)
    offer = f"tables that can be swept: {', '.join(can) or 'none'}"
    for name in names:
        if name not in known:
            raise InputError(f"{option} {name!r}: no such table in the policy ({offer})")
        if name not in can:
            raise InputError(f"{option} {name!r}: retained by policy, a sweep never changes it "
                             f"({offer})")
    return list(dict.fromkeys(names))


def total_line(sweep_id: str, tables: int, rows: int, dry_run: bool) -> str:
    """The sweep's last line, after its table lines: the same for ``dsr sweep`` and the ``dsr_backfill`` DAG's
    summary."""
    if dry_run:
        return f"sweep (dry run): {rows} row(s) would change in {tables} table(s); nothing was written"
    return f"sweep {sweep_id}: {rows} row(s) changed in {tables} table(s); dsr receipt {sweep_id}"


def table_line(t: dict[str, Any], dry_run: bool) -> str:
    """One table's sweep in words (counts only)."""
    if t.get("error"):
        return f"{t['table']:20} FAILED: {t['error']}"
    if t.get("note") and t.get("strategy") == "retain":
        return f"{t['table']:20} {t['note']}"
    mode = "incremental" if t["mode"] == "incremental" else "files" if t["mode"] == "since" else t["mode"]
    since = f" since v{t['since_version']}" if t.get("since_version") is not None else ""
    read = f"{mode}{since}: {t['files_scanned']} of {t['files_live']} file(s) read"
    verb = {"delete": "deleted", "anonymise": "anonymised"}.get(t["strategy"], "changed")
    if dry_run:
        change = f"would {verb[:-1] if verb.endswith('ed') else verb} {t['rows']} row(s)"
    else:
        change = f"{t['rows']} row(s) {verb}"
    where = f" in {t['files_matched']} file(s)" if t.get("files_matched") is not None and t["rows"] else ""
    who = f" of {t['entries_matched']} erased subject(s) (of {t['entries']} on the suppression list)"
    line = f"{t['table']:20} {read}; {change}{where}{who}"
    if not dry_run and t["rows"]:
        line += (f"; v{t['version_before']} -> v{t['version_after']}; GE "
                 + ("passed" if t["success"] else "FAILED: " + ", ".join(t.get("suites") or [])))
    if t.get("note"):
        line += f" ({t['note']})"
    return line


def cli_sweep(policy: Policy, *, tables: Sequence[str], since_version: int | None, since: str | None,
              full: bool, dry_run: bool, as_json: bool, engine: str | None, remote: str | None,
              quiet: bool = False) -> int:
    from dsr.cli.progress import configure
    from dsr.engines import make_engine
    from dsr.steps import sweep as sweeping
    from dsr.steps.sweep_state import new_sweep_id

    names = check_tables(policy, tables)
    if since_version is not None and since_version < 0:
        raise InputError("--since-version: a Delta version is 0 or more")
    window = sweeping.Window(full=full, since_version=since_version, since=parse_since(since))
    policy.pseudonym_key()  # the digests need it: refuse before anything is opened or written
    configure(quiet=quiet)
    eng = make_engine(engine, remote=remote)
    try:
        report = sweeping.sweep(policy, eng, new_sweep_id(), tables=names, window=window, dry_run=dry_run)
    finally:
        eng.close()
    out = report.as_dict()
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return report.exit_code
    for t in out["tables"]:
        print(table_line(t, dry_run))
    print(total_line(report.sweep_id, len(out["tables"]), out["rows"], dry_run))
    return report.exit_code


def print_sweep_receipt(policy: Policy, sweep_id: str, *, as_json: bool) -> int:
    """What one sweep did, per table, from its ``table_swept`` audit events."""
    from dsr.core import audit

    events = [e for e in audit.events(policy, request_id=sweep_id) if e["event"] == "table_swept"]
    if not events:
        raise InputError(f"no sweep with id {sweep_id!r}")
    tables = [{"table": e["table_name"], "at": e["at"].isoformat(), **e["details"]} for e in events]
    if as_json:
        print(json.dumps({"sweep_id": sweep_id, "tables": tables,
                          "events": [{"seq": e["seq"], "hash": e["hash"]} for e in events]}, indent=2, default=str))
        return 0
    print(f"receipt for sweep {sweep_id} (started {tables[0].get('started_at', tables[0]['at'])[:19]} UTC)")
    for t in tables:
        print("  " + table_line(t, False))
    print(f"  audit events: {len(events)} (last hash {events[-1]['hash'][:16]})")
    return 0
