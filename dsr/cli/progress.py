"""How ``dsr run``, ``dsr purge`` and ``dsr sweep`` show their progress on stderr (stdout stays for the result
and ``--json``): a live line per table when stderr is a terminal, plain log lines otherwise, nothing but warnings
and errors with ``--quiet``. The records come from :mod:`dsr.steps.progress` and the steps' own loggers."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

__all__ = ["LiveHandler", "configure"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NOISY = ("great_expectations", "py4j", "pyspark", "urllib3", "botocore")


class LiveHandler(logging.Handler):
    """For a terminal: a table's progress rewrites one line in place until the table is done; warnings and
    errors print as lines above it (the steps' info lines are left to non-terminal logs)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._live = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            info: dict[str, Any] | None = getattr(record, "progress", None)
            if info is None and record.levelno < logging.WARNING:
                return  # on a terminal the display says it; the steps' own detail lines are for logs
            self.stream.write("\r\x1b[K" if self._live else "")
            if info is None:
                self.stream.write(self.format(record) + "\n")
                self._live = False
            elif info.get("done"):
                self.stream.write(f"{info['step']:6} {info['table']:24} {info.get('text', 'done')}\n")
                self._live = False
            else:
                self.stream.write(f"{info['step']:6} {info['table']:24} working...")
                self._live = True
            self.stream.flush()
        except Exception:  # a display must never break the run
            self.handleError(record)


def configure(*, quiet: bool = False, stream: TextIO | None = None) -> None:
    """Show dsr's log records on ``stream`` (stderr) for a command that does long work. The handler sits on the
    ``dsr`` logger, replacing the one an earlier call set; records still reach the root logger's handlers."""
    out = stream or sys.stderr
    logger = logging.getLogger("dsr")
    for h in [h for h in logger.handlers if getattr(h, "_dsr_progress", False)]:
        logger.removeHandler(h)
    handler: logging.Handler = LiveHandler(out) if not quiet and out.isatty() else logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler._dsr_progress = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
