"""The HTML report of ``dsr report``: one page per run (and per sweep) and an index, built from the control
table's rows and the audit log's rows by pure functions.

A page holds request ids, kinds and outcomes, table names, strategies, row and file counts, Delta versions,
the Great Expectations suites' results and the residue scans: never a subject id (request rows' subject
column is not read, and audit rows hold none). Every value is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core.requests import Request

__all__ = ["RunView", "collect", "index_page", "run_page"]

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
          "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}"
          ".ok{color:#176117}.bad{color:#a11;font-weight:bold}")


@dataclass
class RunView:
    """One run's (or sweep's) events, grouped for its page."""

    run_id: str
    started: Any = None
    ended: Any = None
    requests: dict[str, str] = field(default_factory=dict)  # request id -> kind
    outcomes: dict[str, str] = field(default_factory=dict)  # request id -> completed | failed: reason
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # table -> what was done there
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # table -> the GE result
    residue: dict[str, Any] = field(default_factory=dict)  # request id -> the last residue scan's total

    @property
    def page(self) -> str:
        return f"{self.run_id}.html"


def _table_row(view: RunView, e: Mapping[str, Any]) -> None:
    d, name, ev = e["details"], e["table_name"], e["event"]
    row = view.tables.setdefault(name, {"operation": "", "strategy": "", "rows": 0, "exported": 0, "error": "",
                                        "version_before": None, "version_after": None, "files_rewritten": 0,
                                        "files_added": 0})
    op = {"table_erased": "erase", "table_retained": "erase", "table_swept": "sweep", "table_exported": "export"}
    if ev in op and op[ev] not in row["operation"].split(", "):
        row["operation"] = ", ".join(x for x in (row["operation"], op[ev]) if x)
    if ev == "table_erased":
        row.update(strategy=str(d.get("strategy", "")), rows=int(d.get("rows_matched_total") or 0),
                   files_rewritten=int(d.get("files_rewritten") or 0), files_added=int(d.get("files_added") or 0))
    elif ev == "table_retained":
        row.update(strategy="retain")
    elif ev == "table_swept":
        row.update(strategy=str(d.get("strategy", "")), rows=int(d.get("rows") or 0),
                   error=str(d.get("error") or ""))
    elif ev == "table_exported":
        row["exported"] += int(d.get("rows") or 0)
    elif ev == "table_failed":
        row["error"] = str(d.get("reason", ""))
    for k in ("version_before", "version_after"):
        if d.get(k) is not None:
            row[k] = int(d[k]) if row[k] is None or k == "version_after" else min(row[k], int(d[k]))


def collect(requests: Sequence[Request], events: Sequence[Mapping[str, Any]]) -> list[RunView]:
    """Every run and sweep in the audit log (chain order), newest first. Pure."""
    kinds = {r.request_id: r.kind for r in requests}
    views: dict[str, RunView] = {}
    scans: dict[str, Any] = {}
    for e in events:
        if e["event"] == "residue_scanned":
            scans[e["request_id"]] = e["details"].get("total")
        run = e["run_id"]
        if not run:
            continue
        view = views.setdefault(run, RunView(run, started=e["at"]))
        view.ended = e["at"]
        rid = e["request_id"]
        if rid in kinds:
            view.requests[rid] = kinds[rid]
        if e["event"] == "completed":
            view.outcomes[rid] = "completed"
        elif e["event"] == "failed":
            view.outcomes[rid] = "failed: " + str(e["details"].get("error", ""))
        elif e["event"] == "verified":
            view.checks[e["table_name"]] = e["details"]
        elif e["event"] in ("table_erased", "table_retained", "table_swept", "table_exported", "table_failed"):
            _table_row(view, e)
    for view in views.values():
        view.residue = {rid: scans[rid] for rid in view.requests if rid in scans}
    shown = [v for v in views.values() if v.tables or v.outcomes]
    return sorted(shown, key=lambda v: (v.started, v.run_id), reverse=True)


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> str:
    if not rows:
        return f"<p>{_esc(empty)}</p>"
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{_esc(title)}</h1>{body}</body></html>\n")


def run_page(view: RunView) -> str:
    """The page of one run: requests and outcomes, tables, GE results, residue scans."""
    reqs = [(rid, kind, view.outcomes.get(rid, "not settled in this run"))
            for rid, kind in sorted(view.requests.items())]
    tables = [(name, t["operation"], t["strategy"], t["rows"], t["exported"], t["version_before"], t["version_after"],
               t["files_rewritten"], t["files_added"], t["error"]) for name, t in sorted(view.tables.items())]
    checks = [(name, "passed" if c.get("success") else "FAILED", c.get("version"),
               ", ".join(f"{s.get('suite', s.get('name', '?'))}: {'ok' if s.get('success') else 'FAILED'}"
                         for s in c.get("suites", [])), "; ".join(c.get("notes", [])))
              for name, c in sorted(view.checks.items())]
    residue = [(rid, total) for rid, total in sorted(view.residue.items())]
    body = (f"<p>From {_esc(view.started)} to {_esc(view.ended)} (UTC).</p>"
            "<h2>Requests</h2>" + _table(["request", "kind", "outcome"], reqs, "No request in this run.")
            + "<h2>Tables</h2>" + _table(["table", "operation", "strategy", "rows", "rows exported", "version before",
                                          "version after", "files rewritten", "files added", "error"], tables,
                                         "No table was touched.")
            + "<h2>Great Expectations</h2>" + _table(["table", "result", "version read", "suites", "notes"], checks,
                                                     "No verification in this run.")
            + "<h2>Residue scan</h2>" + _table(["request", "findings"], residue,
                                               "Not scanned yet (dsr purge scans once an erasure is purged)."))
    return _page(f"dsr run {view.run_id}", body)


def index_page(views: Sequence[RunView]) -> str:
    """The list of runs, newest first, each linked to its page."""
    items = "".join(
        f'<li><a href="{_esc(v.page)}">{_esc(v.run_id)}</a> — {_esc(v.started)}: {len(v.requests)} request(s), '
        f"{len(v.tables)} table(s)</li>" for v in views)
    return _page("dsr runs", f"<ul>{items}</ul>" if items else "<p>No run yet.</p>")
