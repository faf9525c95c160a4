"""``dsr report [--out DIR]``: write the HTML report (an index and a page per run) into DIR."""

from __future__ import annotations

import os
import sys

from dsr.cli.report_pages import collect, index_page, run_page
from dsr.core.policy import Policy
from dsr.delta import storage
from dsr.errors import InputError

__all__ = ["cli_report"]


def cli_report(policy: Policy, out: str) -> int:
    """One read of the control table and of the audit log, then the pages (run ids are safe file names). A
    folder that cannot be made or written is one line (InputError, exit 2), found before anything is read."""
    from dsr.core import audit, control

    _check_out(out)
    views = collect(control.list_requests(policy), audit.events(policy))
    try:
        os.makedirs(out, exist_ok=True)
        for view in views:
            _write(os.path.join(out, view.page), run_page(view))
        _write(os.path.join(out, "index.html"), index_page(views))
    except OSError as exc:
        raise InputError(f"--out {out!r}: cannot write the report ({exc.strerror or type(exc).__name__})") from None
    print(os.path.join(out, "index.html"))
    print(f"report: {len(views)} run(s) in {out}", file=sys.stderr)
    return 0


def _check_out(out: str) -> None:
    """The folder exists and is writable, or its nearest existing ancestor is a writable folder."""
    if not out.strip():
        raise InputError("--out: empty: name the folder to write the report into")
    storage.check_writable_folder(out, f"--out {out!r}")


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
