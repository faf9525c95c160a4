"""``dsr report [--out DIR]``: write the HTML report (an index and a page per run) into DIR."""

from __future__ import annotations

import os
import sys

from dsr.cli.report_pages import collect, index_page, run_page
from dsr.core.policy import Policy
from dsr.errors import InputError

__all__ = ["cli_report"]


def cli_report(policy: Policy, out: str) -> int:
    """One read of the control table and of the audit log, then the pages (run ids are safe file names)."""
    from dsr.core import audit, control

    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out!r}: not a directory")
    views = collect(control.list_requests(policy), audit.events(policy))
    os.makedirs(out, exist_ok=True)
    for view in views:
        _write(os.path.join(out, view.page), run_page(view))
    _write(os.path.join(out, "index.html"), index_page(views))
    print(os.path.join(out, "index.html"))
    print(f"report: {len(views)} run(s) in {out}", file=sys.stderr)
    return 0


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
