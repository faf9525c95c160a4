"""``dsr receipt REQUEST_ID``: what was done for one request, from the control table and the audit log.

A receipt names the request id, never the subject id, so it can be shown to an auditor as it is.
"""

from __future__ import annotations

import json
from typing import Any

from dsr import audit, control
from dsr.errors import InputError
from dsr.policy import Policy
from dsr.subjects import uncastable_note

__all__ = ["build_receipt", "print_receipt"]


def build_receipt(policy: Policy, request_id: str) -> dict[str, Any]:
    found = control.list_requests(policy, ids=[request_id])
    if not found:
        raise InputError(f"no request with id {request_id!r}")
    r = found[0]
    events = audit.events(policy, request_id=request_id)
    tables: dict[str, dict[str, Any]] = {}
    for e in events:
        name = e["table_name"]
        if not name:
            continue
        entry = tables.setdefault(name, {})
        d = e["details"]
        if e["event"] == "table_exported":
            entry.update({"exported_rows": d.get("rows"), "export_version": d.get("version")})
        elif e["event"] in ("table_erased", "table_retained"):
            entry.update({k: d.get(k) for k in (
                "strategy", "rows", "rows_deleted", "rows_updated", "files_added", "files_removed",
                "version_before", "version_after", "reason", "engine", "recovered_from_commit",
            ) if d.get(k) is not None})
            if d.get("subject_matchable") is False:
                column = next((t.subject for t in policy.tables if t.name == name), "its subject column")
                entry["note"] = uncastable_note(column)
        elif e["event"] == "verified":
            entry["ge_success"] = d.get("success")
            entry["ge_suites"] = [
                {"suite": s["suite"], "success": s["success"], "rows_checked": s["rows_checked"],
                 "unexpected": s["unexpected"]}
                for s in d.get("suites", [])
            ]
            if d.get("notes"):
                entry["ge_notes"] = d["notes"]
    return {
        "request_id": r.request_id, "kind": r.kind, "status": r.status, "ticket": r.ticket,
        "requested_by": r.requested_by, "received_at": r.received_at.isoformat(), "due_at": r.due_at.isoformat(),
        "updated_at": r.updated_at.isoformat(), "attempts": r.attempts, "run_id": r.run_id, "error": r.error,
        "export_uri": r.export_uri, "tables": tables,
        "events": [{"seq": e["seq"], "at": e["at"].isoformat(), "event": e["event"], "table": e["table_name"],
                    "run_id": e["run_id"], "hash": e["hash"]} for e in events],
    }


def print_receipt(policy: Policy, request_id: str, *, as_json: bool) -> int:
    rec = build_receipt(policy, request_id)
    if as_json:
        print(json.dumps(rec, indent=2, default=str))
        return 0
    print(f"receipt for {rec['request_id']} ({rec['kind']}, ticket {rec['ticket'] or '-'})")
    print(f"  status {rec['status']}  received {rec['received_at'][:19]}  due {rec['due_at'][:10]}  "
          f"attempts {rec['attempts']}  run {rec['run_id'] or '-'}")
    if rec["error"]:
        print(f"  error: {rec['error']}")
    if rec["export_uri"]:
        print(f"  export: {rec['export_uri']}")
    for name, t in rec["tables"].items():
        parts = []
        if "exported_rows" in t:
            parts.append(f"exported {t['exported_rows']} row(s) at v{t['export_version']}")
        if "strategy" in t:
            if t["strategy"] == "retain":
                parts.append(f"retained ({t.get('reason')})")
            else:
                parts.append(f"{t['strategy']} {t.get('rows', 0)} row(s), files -{t.get('files_removed', 0)}"
                             f"/+{t.get('files_added', 0)}, v{t.get('version_before')}->v{t.get('version_after')}")
        if "ge_success" in t and t.get("strategy") != "retain":
            parts.append("GE " + ("passed" if t["ge_success"] else "FAILED"))
        if "note" in t:
            parts.append(t["note"])
        print(f"  {name:20} " + "; ".join(parts))
    last = rec["events"][-1]["hash"][:16] if rec["events"] else "-"
    print(f"  audit events: {len(rec['events'])} (last hash {last})")
    return 0
