"""``dsr receipt REQUEST_ID``: what was done for one request, from the control table and the audit log.

A receipt names the request id, never the subject id, so it can be shown to an auditor as it is. Of the person's
identifiers it gives the kinds and how many of each, never a value; per table and subject column, the rows
matched under the column's kind (``columns``, from the ``table_erased`` and ``table_exported`` events of tables
with several subject columns or of a policy that declares identifier kinds).
"""

from __future__ import annotations

import json
from typing import Any

from dsr.core import audit, control
from dsr.core.identifiers import IMPLICIT
from dsr.core.masks import Strategy
from dsr.core.policy import Policy
from dsr.core.subjects import uncastable_note
from dsr.errors import InputError
from dsr.exports import expiry

__all__ = ["build_receipt", "file_effect", "print_receipt"]

_SUMMED = ("rows", "rows_deleted", "rows_updated", "files_added", "files_removed", "files_rewritten", "dv_marked",
           "cdc_files")


def file_effect(t: dict[str, Any]) -> str:
    """What an erase commit did to files, in words: files rewritten, or rows only marked by deletion vectors."""
    parts = []
    rewritten = t.get("files_rewritten", t.get("files_removed", 0)) or 0
    if rewritten:
        how = "with the rows masked" if t.get("strategy") == Strategy.ANONYMISE else "without the rows"
        parts.append(f"{rewritten} file(s) rewritten {how}")
    if t.get("files_added"):
        parts.append(f"{t['files_added']} file(s) written")
    if t.get("dv_marked"):
        parts.append(f"rows marked deleted by deletion vectors in {t['dv_marked']} file(s) "
                     "(still on disk until purged)")
    if t.get("cdc_files"):
        parts.append(f"{t['cdc_files']} change-data file(s)")
    return ", ".join(parts) or "no file changed"


def build_receipt(policy: Policy, request_id: str) -> dict[str, Any]:
    """The receipt of one request: its control-table row and, per table, what its audit events say. One pass
    over the events with a branch per event kind, kept together: split, each branch would pass the entry
    being built back and forth."""
    found = control.list_requests(policy, ids=[request_id])
    if not found:
        raise InputError(f"no request with id {request_id!r}")
    r = found[0]
    events = audit.events(policy, request_id=request_id)
    tables: dict[str, dict[str, Any]] = {}
    deleted: dict[str, Any] | None = None
    for e in events:
        name = e["table_name"]
        if e["event"] == "export_deleted":
            deleted = {"at": e["at"].isoformat(), "why": e["details"].get("why")}
        if not name:
            continue
        entry = tables.setdefault(name, {})
        d = e["details"]
        if e["event"] == "table_exported":
            entry.update({"exported_rows": d.get("rows"), "export_version": d.get("version")})
            for column, c in (d.get("columns") or {}).items():  # a later attempt's scan replaces an earlier's
                entry.setdefault("columns", {}).setdefault(column, {}).update(
                    {"kind": c.get("kind"), "exported_rows": c.get("rows"), "matchable": c.get("matchable")})
        elif e["event"] in ("table_erased", "table_retained"):
            first = "strategy" not in entry
            entry.pop("error", None)
            entry.update({k: d.get(k) for k in (
                "strategy", "reason", "engine", "recovered_from_commit", "version_after",
            ) if d.get(k) is not None})
            if first or entry.get("version_before") is None:
                entry["version_before"] = d.get("version_before")
            for k in _SUMMED:  # a repeated erase (rows appended since) adds to the first
                if d.get(k) is not None:
                    entry[k] = (0 if first else entry.get(k, 0)) + int(d[k])
            entry["commits"] = (0 if first else entry.get("commits", 0)) + int(
                d.get("version_after") != d.get("version_before"))
            _erased_columns(entry, d.get("columns") or {})
            if d.get("subject_matchable") is False:
                column = next((t.subject for t in policy.tables if t.name == name), "its subject column")
                entry["note"] = uncastable_note(column)
        elif e["event"] == "table_failed":
            entry["error"] = d.get("reason")
        elif e["event"] == "table_purged":
            entry["purged"] = {"at": e["at"].isoformat(), **{k: d.get(k) for k in (
                "version", "unreadable_versions", "data_files_removed", "log_files_removed", "bytes_removed")}}
        elif e["event"] == "verified":
            entry["ge_success"] = d.get("success")
            entry["ge_suites"] = [
                {"suite": s["suite"], "success": s["success"], "rows_checked": s["rows_checked"],
                 "unexpected": s["unexpected"]}
                for s in d.get("suites", [])
            ]
            if d.get("notes"):
                entry["ge_notes"] = d["notes"]
    _policy_order(policy, tables)
    own_residue = _residue(events, tables)
    return {
        "request_id": r.request_id, "kind": r.kind, "status": r.status, "ticket": r.ticket,
        "requested_by": r.requested_by, "received_at": r.received_at.isoformat(), "due_at": r.due_at.isoformat(),
        "updated_at": r.updated_at.isoformat(), "attempts": r.attempts, "run_id": r.run_id, "error": r.error,
        "export_uri": r.export_uri, "export_state": _export_state(policy.exports, r.request_id, r.export_uri, deleted),
        "export_deleted": deleted, "outcome": r.result_json().get("outcome"), **_identifier_kinds(r),
        "tables": tables,
        "package": {k: r.result_json().get(k) for k in ("format", "sealed", "expires_at")}
        if r.kind == "export" and r.result_json().get("format") else None,
        "own_residue": own_residue,
        "events": [{"seq": e["seq"], "at": e["at"].isoformat(), "event": e["event"], "table": e["table_name"],
                    "run_id": e["run_id"], "hash": e["hash"]} for e in events],
    }


def _erased_columns(entry: dict[str, Any], columns: dict[str, Any]) -> None:
    """Per subject column of a ``table_erased`` event: its kind, role, rows and whether the person's identifiers
    could be cast to it; a repeated erase adds its rows to the first's."""
    for column, c in columns.items():
        slot = entry.setdefault("columns", {}).setdefault(column, {})
        slot.update({"kind": c.get("kind"), "role": c.get("role"),
                     "rows": slot.get("rows", 0) + int(c.get("rows") or 0),
                     "matchable": bool(slot.get("matchable")) or bool(c.get("matchable"))})


def _policy_order(policy: Policy, tables: dict[str, dict[str, Any]]) -> None:
    """Each table's ``columns`` in the policy's order of its subject columns (owners first); columns the policy
    no longer names last, by name."""
    for name, entry in tables.items():
        if entry.get("columns"):
            spec = next((t for t in policy.tables if t.name == name), None)
            order = {c: i for i, c in enumerate(spec.subject_names if spec else ())}
            ranked = sorted(entry["columns"], key=lambda c: (order.get(c, len(order)), c))
            entry["columns"] = {c: entry["columns"][c] for c in ranked}


def _identifier_kinds(r: control.Request) -> dict[str, Any]:
    """The person's identifiers as kinds and counts, never values: ``identifier_kinds`` {kind: count} and
    ``identity_resolved`` (whether the claim froze a resolved set; before it, the identifiers filed)."""
    try:
        ids, resolved = r.ids, r.resolved is not None
    except (ValueError, TypeError):  # identities no longer readable: say nothing rather than fail the receipt
        return {"identifier_kinds": None, "identity_resolved": None}
    kinds: dict[str, int] = {}
    for i in ids:
        kinds[i.kind] = kinds.get(i.kind, 0) + 1
    return {"identifier_kinds": dict(sorted(kinds.items())), "identity_resolved": resolved}


def _columns_line(t: dict[str, Any]) -> str | None:
    """The rows matched per subject column, in words: ``by column: sender_id (user_id) 2 row(s); recipient_id
    (user_id, mentioned) 1 row(s) masked`` (an export's: "row(s) found"; a row found by two columns counts under
    each); None for a table without per-column counts."""
    columns = t.get("columns")
    if not columns:
        return None
    parts = []
    for column, c in columns.items():
        about = ", ".join(x for x in (str(c.get("kind")), "mentioned" if c.get("role") == "mentioned" else "") if x)
        verb = " masked" if c.get("role") == "mentioned" else ""  # a mention: the row stays, the column masked
        counts = [f"{c['rows']} row(s){verb}" if "rows" in c else "", f"{c['exported_rows']} row(s) found"
                  if c.get("exported_rows") is not None else ""]
        cast = "" if c.get("matchable", True) else ", cannot be cast"
        parts.append(f"{column} ({about}{cast}) {', '.join(x for x in counts if x) or '-'}")
    return "by column: " + "; ".join(parts)


def _export_state(exports: str, request_id: str, uri: str | None, deleted: dict[str, Any] | None) -> str | None:
    """What became of the package: "deleted" (an ``export_deleted`` event: ``dsr purge`` removed it), "present",
    "missing" (not under the policy's exports, though no dsr command deleted it), "unknown" (its location cannot
    be asked); None without a package. Looked for by request id under ``exports``, as the purge does (a copied
    lake's control table names the original's path)."""
    if not uri:
        return None
    if deleted is not None:
        return "deleted"
    try:
        there = bool(expiry.documents_of(exports, [request_id]))
    except Exception:  # an unreachable S3 endpoint, missing credentials: never claim it is gone
        return "unknown"
    return "present" if there else "missing"


def _export_line(rec: dict[str, Any]) -> str:
    """The receipt's export line: the package's path and format, and whether it is still there."""
    package = rec.get("package") or {}
    about = (f"  ({package['format']}{', sealed' if package.get('sealed') else ''}, expires "
             f"{str(package['expires_at'])[:16]})") if package else ""
    state = rec.get("export_state")
    if state == "deleted":
        gone = rec["export_deleted"]
        why = str(gone.get("why") or "")
        reason = ("the person's erasure was purged" if why == "erased"
                  else f"expired: {why}" if why else "by dsr purge")
        when = gone["at"][:16].replace("T", " ")
        return f"  export: DELETED {when} UTC ({reason}); it was {rec['export_uri']}{about}"
    if state == "missing":
        return f"  export: NO LONGER THERE: {rec['export_uri']}{about} (no dsr command deleted it)"
    return f"  export: {rec['export_uri']}{about}" + (" (its location could not be checked)" if state == "unknown"
                                                       else "")


def _residue(events: list[dict[str, Any]], tables: dict[str, dict[str, Any]]) -> dict[str, int] | None:
    """The purge's residue scan (its last ``residue_scanned`` event): per table the findings left (or
    "retained") into ``tables``; returns dsr's own places, or None when no scan ran."""
    scans = [e["details"] for e in events if e["event"] == "residue_scanned"]
    if not scans:
        return None
    for name, found in scans[-1].get("tables", {}).items():
        tables.setdefault(name, {})["residue"] = found if isinstance(found, str) else sum(found.values())
    own: dict[str, int] | None = scans[-1].get("own")
    return own


def print_receipt(policy: Policy, request_id: str, *, as_json: bool) -> int:
    rec = build_receipt(policy, request_id)
    if as_json:
        print(json.dumps(rec, indent=2, default=str))
        return 0
    print(f"receipt for {rec['request_id']} ({rec['kind']}, ticket {rec['ticket'] or '-'})")
    print(f"  status {rec['status']}  received {rec['received_at'][:19]}  due {rec['due_at'][:10]}  "
          f"attempts {rec['attempts']}  run {rec['run_id'] or '-'}")
    if rec["outcome"]:
        print(f"  outcome: {rec['outcome']}")
    if rec["error"]:
        print(f"  error: {rec['error']}")
    if rec["export_uri"]:
        print(_export_line(rec))
    kinds = rec["identifier_kinds"]
    if kinds and (set(kinds) != {IMPLICIT} or sum(kinds.values()) > 1):
        how = "resolved through the link tables" if rec["identity_resolved"] else "as filed"
        print(f"  identifiers: {', '.join(f'{k} {n}' for k, n in kinds.items())} ({how}; values not shown)")
    for name, t in rec["tables"].items():
        parts = []
        if "exported_rows" in t:
            parts.append(f"exported {t['exported_rows']} row(s) at v{t['export_version']}")
        if "strategy" in t:
            if t["strategy"] == Strategy.RETAIN:
                held = f" {t['rows']} row(s)" if t.get("rows") is not None else ""
                parts.append(f"retained{held} ({t.get('reason')})")
            else:
                commit = (f"the batch's commit v{t.get('version_before')}->v{t.get('version_after')}: "
                          f"{file_effect(t)}" if t.get("commits") else "no commit needed")
                parts.append(f"{t['strategy']} {t.get('rows', 0)} row(s); {commit}")
        if "ge_success" in t and t.get("strategy") != Strategy.RETAIN:
            parts.append("GE " + ("passed" if t["ge_success"] else "FAILED"))
        if "note" in t:
            parts.append(t["note"])
        if "purged" in t:
            purged = t["purged"]
            parts.append(f"purged {purged['at'][:10]} (versions {purged['unreadable_versions']} unreadable, "
                         f"{purged.get('data_files_removed') or 0} old file(s) removed)")
        if isinstance(t.get("residue"), int):
            parts.append(f"residue: {t['residue']}")
        if t.get("error"):
            parts.append(f"FAILED: {t['error']}")
        print(f"  {name:20} " + "; ".join(parts))
        by_column = _columns_line(t)
        if by_column:
            print(f"  {'':20}   {by_column}")
    if rec["own_residue"] is not None:
        own = ", ".join(f"{place} {n}" for place, n in rec["own_residue"].items())
        print(f"  {'residue elsewhere':20} {own}")
    last = rec["events"][-1]["hash"][:16] if rec["events"] else "-"
    print(f"  audit events: {len(rec['events'])} (last hash {last})")
    return 0
