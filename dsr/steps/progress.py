"""Progress of long work, per table, as log records of the logger ``dsr.progress``.

A record's ``progress`` attribute holds the step, the table, whether it is done, and counts (rows scanned,
rows changed, files rewritten...): never a subject id. The command line shows them as a live display when
stderr is a terminal, as plain log lines otherwise, and not at all with ``--quiet`` (``dsr.cli.progress``).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["finished", "started"]

log = logging.getLogger("dsr.progress")

_WORDS = {
    "rows_scanned": "row(s) scanned", "rows": "row(s) changed", "files_scanned": "file(s) read",
    "files_rewritten": "file(s) rewritten", "files_added": "file(s) added", "data_files_removed": "file(s) removed",
    "bytes_removed": "bytes removed",
}


def started(step: str, table: str) -> None:
    log.info("%s %s: started", step, table, extra={"progress": {"step": step, "table": table, "done": False}})


def finished(step: str, table: str, counts: dict[str, Any], error: str | None = None) -> None:
    """The table's counts (only the keys of ``_WORDS`` that are set), or its error."""
    shown = {k: counts[k] for k in _WORDS if counts.get(k) is not None}
    text = f"FAILED: {error}" if error else ", ".join(f"{v} {_WORDS[k]}" for k, v in shown.items()) or "done"
    log.log(logging.ERROR if error else logging.INFO, "%s %s: %s", step, table, text,
            extra={"progress": {"step": step, "table": table, "done": True, "text": text, **shown}})
