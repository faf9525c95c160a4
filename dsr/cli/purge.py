"""``dsr purge``: the purge report (what became unreadable, what was removed, the residue left)."""

from __future__ import annotations

import json

from dsr.core.policy import Policy
from dsr.steps import purge as purging

__all__ = ["cli_purge", "purge_lines"]


def cli_purge(policy: Policy, *, dry_run: bool, as_json: bool) -> int:
    """Purge (or, dry run, list what a purge would remove); exit 1 when a table failed or residue is left in a
    purged table's files."""
    report = purging.purge(policy, dry_run=dry_run)
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
            print(f"{head}: nothing committed here for them; nothing to remove")
            continue
        print(f"{head}: versions {r['unreadable_versions']} {'would become' if dry_run else 'are now'} "
              f"unreadable (oldest readable: {t.version}); {verb} {r['data_files_removed']} data file(s), "
              f"{r['log_files_removed']} log file(s), {r['bytes_removed']} bytes; "
              f"{'would rewrite' if dry_run else 'rewrote'} {r['dv_files_rewritten']} file(s) with deletion vectors")
        if t.residue is not None:
            print(f"{'':20} residue: {t.residue}")
    if report.minimised:
        m = report.minimised
        print(f"{'control table':20} {m['requests']} purged erasure(s): subject ids replaced by keyed digests; "
              f"versions {m['unreadable_versions']} are now unreadable; residue: {m['control_residue']}")
    for table, when in sorted(report.waiting.items()):
        print(f"{table:20} next purge due {when} UTC")
    if report.own_residue:
        own = ", ".join(f"{place} {n}" for place, n in report.own_residue.items())
        print(f"dsr's own places still naming the purged subjects: {own}")
    return report.exit_code


def purge_lines(policy: Policy) -> tuple[bool, list[str]]:
    """Purge now and say it in a few lines per table (the demo's last stage); False when a table failed or
    residue is left in a purged table."""
    report = purging.purge(policy)
    lines = []
    for t in report.tables:
        if t.error:
            lines.append(f"{t.table:16} purge FAILED: {t.error}")
        elif t.version is None:
            lines.append(f"{t.table:16} nothing committed for the erased subjects; residue: {t.residue}")
        else:
            r = t.removed
            lines.append(f"{t.table:16} versions {r['unreadable_versions']} unreadable, {r['data_files_removed']} "
                         f"data file(s) and {r['log_files_removed']} log file(s) removed; residue: {t.residue}")
    if report.minimised:
        m = report.minimised
        lines.append(f"{'control table':16} {m['requests']} subject id(s) replaced by keyed digests, old versions "
                     f"removed; residue: {m['control_residue']}")
    if not report.tables:
        lines.append("no erasure due for purge")
    return report.exit_code == 0 and bool(report.tables), lines
