"""``dsr residue``: which erasures to scan, and the scan's report (counts per request, table and place)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dsr.core import control
from dsr.core.policy import Policy
from dsr.core.requests import Request, check_request_id
from dsr.errors import InputError
from dsr.verify import residue

__all__ = ["cli_residue", "erasures_to_scan"]


def erasures_to_scan(policy: Policy, request_ids: Sequence[str]) -> list[Request]:
    """The named erasure requests (InputError for an unknown id, an export, or a purged erasure whose id is
    minimised), else every completed erasure whose id is still known."""
    if not request_ids:
        return [r for r in control.list_requests(policy, status="completed")
                if r.kind == "erase" and not r.minimised]
    wanted = [check_request_id(rid) for rid in request_ids]
    found = {r.request_id: r for r in control.list_requests(policy, ids=wanted)}
    for rid in wanted:
        if rid not in found:
            raise InputError(f"no request {rid}")
        if found[rid].kind != "erase":
            raise InputError(f"request {rid} is an export: residue is searched for erasures")
        if found[rid].minimised:
            raise InputError(f"request {rid} is purged and its subject id minimised: the purge's residue scan is "
                             "in its table_purged and minimised audit events (dsr receipt)")
    return [found[rid] for rid in dict.fromkeys(wanted)]


def _places(entry: dict[str, int] | str) -> str:
    if isinstance(entry, str):
        return "retained (kept by policy, not residue)"
    found = {place: n for place, n in entry.items() if n}
    return ", ".join(f"{place} {n}" for place, n in found.items()) if found else "0"


def cli_residue(policy: Policy, request_ids: Sequence[str], *, as_json: bool, engine: str | None = None,
                remote: str | None = None) -> int:
    """Scan and print; exit 1 when anything of an erased subject is left, 0 when nothing is. With the Spark
    engine (``engine``/``remote``), the tables' data files are read on the cluster; a bad engine or an address
    that does not answer is one line and exit 2, before anything is read."""
    from dsr.cli.options import check_engine_args
    from dsr.engines import engine_name, make_engine

    if engine or remote:
        check_engine_args(engine, remote)
    todo = erasures_to_scan(policy, request_ids)
    if todo and engine_name(engine, remote) == "spark":
        spark = make_engine("spark", remote=remote)
        try:
            results = residue.scan(policy, todo, reader=spark.reader)
        finally:
            spark.close()
    else:
        results = residue.scan(policy, todo)
    total = sum(r.total() for r in results)
    if as_json:
        report: dict[str, Any] = {"requests": [r.as_dict() for r in results], "total": total}
        print(json.dumps(report, indent=2))
        return 1 if total else 0
    if not results:
        print("residue: no completed erasure to scan")
        return 0
    for r in results:
        print(f"{r.request_id}  residue: {r.total()}")
        for name, entry in r.tables.items():
            print(f"  {name:20} {_places(entry)}")
        for place, n in r.own.items():
            print(f"  {place:20} {n}")
    print(f"residue: {total} in {len(results)} erasure(s)" + (" (dsr purge removes it)" if total else ""))
    return 1 if total else 0
