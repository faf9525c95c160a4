"""``dsr purge``: the purge report (what became unreadable, what was removed, the residue left)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from dsr.core.policy import Policy
from dsr.steps import purge as purging

__all__ = ["cli_purge", "purge_lines"]


def cli_purge(policy: Policy, *, dry_run: bool, as_json: bool, engine: str | None = None,
              remote: str | None = None, quiet: bool = False) -> int:
    """Purge (or, dry run, list what a purge would remove); exit 1 when a table failed or residue is left in a
    purged table's files. A Spark engine (``engine``/``remote``) is opened only to write, only when asked."""
    from dsr.cli.progress import configure
    from dsr.steps import progress

    configure(quiet=quiet)
    spark = _spark(policy, engine, remote) if not dry_run else None
    try:
        with progress.dry_run(dry_run):  # a dry run's progress says what would be removed
            report = purging.purge(policy, dry_run=dry_run, engine=spark)
    finally:
        if spark is not None:
            spark.close()
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
        return report.exit_code
    verb = "would remove" if dry_run else "removed"
    if not report.tables:
        print("purge: no erasure is due for purge" + (" (dry run)" if dry_run else ""))
    for t in report.tables:
        head = f"{t.table:20} {len(t.request_ids)} erasure(s)"
        if t.error:
            print(f"{head}: FAILED: {t.error}")
            continue
        r = t.removed
        if t.version is None:
            print(f"{head}: nothing of them on disk here; nothing to remove")
            continue
        print(f"{head}: versions {r['unreadable_versions']} {'would become' if dry_run else 'are now'} "
              f"unreadable (oldest readable: {t.version}); {verb} {r['data_files_removed']} data file(s), "
              f"{r['log_files_removed']} log file(s), {r['bytes_removed']} bytes; "
              f"{'would rewrite' if dry_run else 'rewrote'} {r['dv_files_rewritten']} file(s) with deletion vectors"
              + (f" ({r['dv_rewrite']})" if r.get("dv_rewrite") else ""))
        if t.residue is not None:
            print(f"{'':20} residue: {t.residue}")
    if report.minimised.get("error"):
        print(f"{'control table':20} settling the purged erasures FAILED: {report.minimised['error']}; the next "
              "purge settles them")
    elif report.minimised:
        m = report.minimised
        print(f"{'control table':20} {m['requests']} purged erasure(s): subject ids replaced by keyed digests; "
              f"versions {m['unreadable_versions']} are now unreadable; residue: {m['control_residue']}")
    if any(report.exports.values()):
        e = report.exports
        print(f"{'exports':20} {verb} {e['erased']} document(s) of purged erasures' subjects, {e['expired']} "
              f"older than export_ttl_days ({policy.export_ttl_days})")
    for table, when in sorted(report.waiting.items()):
        print(f"{table:20} next purge due {when} UTC")
    if report.own_residue:
        own = ", ".join(f"{place} {n}" for place, n in report.own_residue.items())
        print(f"dsr's own places still naming the purged subjects: {own}")
    return report.exit_code


def _spark(policy: Policy, engine: str | None, remote: str | None) -> Any:
    """The Spark engine when one is asked for (its server may REORG), else None (delta-rs does it all)."""
    from dsr.engines import engine_name, make_engine

    if engine_name(engine, remote) != "spark":
        return None
    policy.pseudonym_key()  # the purge needs it: refuse before a session is opened
    return make_engine("spark", remote=remote)


def _known_as(r: Any, ids: Sequence[tuple[str, str]]) -> Any:
    """A (minimised) request as it was filed and resolved: the identifiers the caller knows, canonical."""
    from dsr.core.identifiers import IMPLICIT, Identifier, identities_json

    known = [Identifier(k, v) for k, v in ids]
    return dataclasses.replace(r, subject_id=known[0].value, id_kind=None if known[0].kind == IMPLICIT
                               else known[0].kind, identities=identities_json(known[:1], known))


def purge_lines(policy: Policy, erased: Mapping[str, Sequence[tuple[str, str]]]) -> tuple[bool, list[str]]:
    """The demo's last stage: purge what is still due, then per table what the purges of these erasures
    (request id -> the (kind, value) identifiers the demo knows of the person) removed and what a residue scan
    with those identifiers finds now. False when a table failed, an erasure is not purged, or residue is
    left."""
    from dsr.core import audit, control
    from dsr.verify import residue

    report = purging.purge(policy)
    events = audit.events_by_request(policy, list(erased))
    purged: dict[str, dict[str, Any]] = {}
    for rid in erased:
        for e in events[rid]:
            if e["event"] == "table_purged" and e["details"].get("version") is not None:
                purged.setdefault(e["table_name"], e["details"])
    requests = [_known_as(r, erased[r.request_id]) for r in control.list_requests(policy, ids=list(erased))]
    found = residue.scan(policy, requests)
    ok = report.exit_code == 0 and len(requests) == len(erased)
    lines = []
    for table in policy.tables:
        counts = [r.tables.get(table.name) for r in found]
        if any(c == residue.RETAINED for c in counts):
            lines.append(f"{table.name:16} retained by policy")
            continue
        left = sum(sum(c.values()) for c in counts if isinstance(c, dict))
        d = purged.get(table.name)
        done = (f"versions {d['unreadable_versions']} unreadable, {d['data_files_removed']} data file(s) and "
                f"{d['log_files_removed']} log file(s) removed" if d else "NOT purged")
        ok = ok and d is not None and left == 0
        lines.append(f"{table.name:16} {done}; residue: {left}")
    own = {place: sum(r.own.get(place, 0) for r in found) for place in residue.OWN_PLACES}
    ok = ok and not any(own.values())
    lines.append("dsr's own places (control table, audit table, exports): residue "
                 + ", ".join(str(n) for n in own.values()))
    return ok, lines
