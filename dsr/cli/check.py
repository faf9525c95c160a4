"""``dsr check``: is the policy valid, every personal table covered or exempt, every table's Delta features
handled by the reader and the engine, every table caught up with past erasures?"""

from __future__ import annotations

import json

from dsr.core.policy import Policy

__all__ = ["cli_check"]


def cli_check(policy: Policy, *, engine: str | None, remote: str | None, as_json: bool) -> int:
    """Exit 1 when a table is refused by the engine, a personal table is neither covered nor exempt, or a table
    is pending its first sweep; 0 (policy OK) otherwise."""
    from dsr.core.coverage import uncovered_tables
    from dsr.core.gate import check_tables
    from dsr.core.policy_catalog import outside_lake
    from dsr.engines import engine_support
    from dsr.exports import check_location
    from dsr.steps.sweep_pending import pending_tables

    check_location(policy.exports)
    support = engine_support(engine, remote=remote)
    verdicts = check_tables(policy, support)
    refused = [v for v in verdicts if not v.ok]
    missing = uncovered_tables(policy)
    pending = pending_tables(policy)
    outside = {t.name for t in outside_lake(policy)}
    named = [{"table": t.name, "catalog": t.catalog, "location": t.uri, "outside_lake": t.name in outside}
             for t in policy.tables if t.catalog is not None]
    ok = not refused and not missing and not pending
    if as_json:
        print(json.dumps({
            "ok": ok, "engine": support.name, "tables": [v.as_dict() for v in verdicts],
            "unsupported": [v.as_dict() for v in refused],
            "uncovered": [{"path": path, "columns": cols} for path, cols in missing],
            "exempt": [{"path": e.path, "reason": e.reason} for e in policy.exempt],
            "pending_first_sweep": [{"table": t, "erasures": n} for t, n in pending.items()],
            "catalog_tables": named,
        }, indent=2))
        return 0 if ok else 1
    if named:
        print(f"dsr check: {len(named)} table(s) named in the Spark catalog; {len(outside)} outside the lake, where "
              "dsr also writes (erase commits, purges):")
        for entry in named:
            where = "  (outside the lake)" if entry["outside_lake"] else ""
            print(f"  {entry['table']}: {entry['catalog']} at {entry['location']}{where}")
    if refused:
        print(f"dsr check: {len(refused)} table(s) cannot be processed on engine {support.name}:")
        for v in refused:
            print(f"  {v.table} (path {v.path}, {v.strategy}):")
            if v.error:
                print(f"    {v.error}")
            for r in v.refusals:
                print(f"    {r.text()}")
        print("  requests touching these tables fail with this reason; change the engine, the table or the policy")
    if missing:
        print(f"dsr check: {len(missing)} personal table(s) neither in 'tables' nor 'exempt':")
        for path, cols in missing:
            print(f"  {path}  (subject-like column: {', '.join(cols)})")
        print("add each to 'tables' (with an erase strategy) or to 'exempt' (with a reason); until then "
              "dsr run claims nothing")
    if pending:
        print(f"dsr check: {len(pending)} table(s) pending their first sweep (not covered until then):")
        for name, n in pending.items():
            print(f"  {name}: {n} past erasure(s) not applied; the next sweep (dsr sweep, or the dsr_process "
                  "DAG) applies them")
    if ok:
        print(f"dsr check: policy OK; {len(policy.tables)} table(s) covered, {len(policy.exempt)} exempt; "
              f"every table's Delta features handled on engine {support.name}")
    return 0 if ok else 1
