"""Progress of long work, per table, as log records of the logger ``dsr.progress``.

A record's ``progress`` attribute holds the step, the table, whether it is done, and counts (rows scanned,
rows changed, files rewritten...): never a subject id. The command line shows them as a live display when
stderr is a terminal, as plain log lines otherwise, and not at all with ``--quiet`` (``dsr.cli.progress``).

The words say what happened: an export's rows are exported, not changed; inside :func:`dry_run` nothing is
written, so what a step would change, rewrite or remove is said as such (``would remove 25 file(s)``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["dry_run", "finished", "started", "summary"]

log = logging.getLogger("dsr.progress")

# count -> (what is counted, the verb of work done or None for what was only read). Shown in this order.
_WORDS: dict[str, tuple[str, str | None]] = {
    "rows_scanned": ("row(s) scanned", None), "rows": ("row(s)", "changed"), "files_scanned": ("file(s) read", None),
    "files_rewritten": ("file(s)", "rewritten"), "files_added": ("file(s)", "added"),
    "data_files_removed": ("file(s)", "removed"), "bytes_removed": ("bytes", "removed"),
}
_STEP_VERBS = {"export": {"rows": "exported"}}  # an export reads: its rows are exported, nothing changes
_WOULD = {"changed": "change", "rewritten": "rewrite", "added": "add", "removed": "remove"}

_DRY_RUN: ContextVar[bool] = ContextVar("dsr_progress_dry_run", default=False)


@contextmanager
def dry_run(on: bool = True) -> Iterator[None]:
    """Within it, the counts given to :func:`finished` are what a dry run *would* do, and are worded so."""
    token = _DRY_RUN.set(on)
    try:
        yield
    finally:
        _DRY_RUN.reset(token)


def summary(step: str, counts: dict[str, Any], *, would: bool = False) -> str:
    """The counts in words: ``12 row(s) scanned, 3 row(s) changed``; an export's ``5 row(s) exported``; with
    ``would`` (a dry run), ``would remove 25 file(s), 890869 bytes``. "done" when no count is set."""
    done: list[str] = []
    planned: dict[str, list[str]] = {}  # verb -> what it would do it to, in the order of _WORDS
    for key, (noun, verb) in _WORDS.items():
        if counts.get(key) is None:
            continue
        verb = _STEP_VERBS.get(step, {}).get(key, verb)
        if verb is None or verb == "exported" or not would:
            done.append(f"{counts[key]} {noun}" + (f" {verb}" if verb else ""))
        else:
            planned.setdefault(_WOULD[verb], []).append(f"{counts[key]} {noun}")
    parts = done + [f"would {verb} {', '.join(what)}" for verb, what in planned.items()]
    return ", ".join(parts) or "done"


def started(step: str, table: str) -> None:
    log.info("%s %s: started", step, table, extra={"progress": {"step": step, "table": table, "done": False}})


def finished(step: str, table: str, counts: dict[str, Any], error: str | None = None) -> None:
    """The table's counts (only the keys of ``_WORDS`` that are set), or its error."""
    shown = {k: counts[k] for k in _WORDS if counts.get(k) is not None}
    would = _DRY_RUN.get()
    text = f"FAILED: {error}" if error else summary(step, shown, would=would)
    log.log(logging.ERROR if error else logging.INFO, "%s %s: %s", step, table, text,
            extra={"progress": {"step": step, "table": table, "done": True, "text": text, "dry_run": would,
                                **shown}})
