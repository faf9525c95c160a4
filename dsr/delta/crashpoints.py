"""Crash points: named places between the writes of a multi-step command where a test may kill this process,
as ``kill -9`` would, to prove that the command run again finishes the job (README: "Crash safety").

Off unless the environment says otherwise, and then only for the process that reads it:

* ``DSR_CRASH_AT=NAME`` or ``NAME:N`` -- the process kills itself with SIGKILL the Nth time (default 1st) it
  reaches the point ``NAME``: nothing after it runs, no ``finally``, no buffered write is flushed;
* ``DSR_CRASH_TRACE=FILE`` -- every point reached is appended to ``FILE``, a name per line (what a test
  enumerates its trials from).

Names are plain words (``purge.after_checkpoint``); they never carry a table's data or a subject id.
"""

from __future__ import annotations

import os
import signal

__all__ = ["reached"]

_seen: dict[str, int] = {}


def reached(name: str) -> None:
    """Mark the point ``name``: traced, and the process killed here when ``DSR_CRASH_AT`` names it."""
    trace = os.environ.get("DSR_CRASH_TRACE")
    spec = os.environ.get("DSR_CRASH_AT")
    if not trace and not spec:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if trace:
        with open(trace, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    if spec:
        point, _, nth = spec.partition(":")
        if point == name and _seen[name] == int(nth or "1"):
            os.kill(os.getpid(), signal.SIGKILL)
