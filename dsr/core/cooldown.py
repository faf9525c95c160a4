"""The cool-down before an erasure: an erasure of a person with a completed export waits until that export's
completion plus ``erase_cooldown_days``, so the person can download the package first. The same person: an
identifier (kind and value) in common, whichever each request was filed with (the resolved set once there is
one). Pure: requests in, waiting times out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from dsr.core.identifiers import Identifier
from dsr.core.requests import Request

__all__ = ["erase_waits"]


def erase_waits(requests: Iterable[Request], cooldown_days: int, now: dt.datetime) -> dict[str, dt.datetime]:
    """Open erasure request id -> when it may proceed, for every erasure still cooling down at ``now``.

    A completed export's completion time is its ``updated_at`` (the completion is its last change)."""
    if cooldown_days <= 0:
        return {}
    rows = list(requests)
    wait = dt.timedelta(days=cooldown_days)
    until: dict[Identifier, dt.datetime] = {}
    for r in rows:
        if r.kind == "export" and r.status == "completed":
            at = r.updated_at + wait
            for i in r.ids:
                until[i] = max(at, until.get(i, at))
    out: dict[str, dt.datetime] = {}
    for r in rows:
        if r.kind == "erase" and r.status != "completed":
            latest = max((until[i] for i in r.ids if i in until), default=None)
            if latest is not None and latest > now:
                out[r.request_id] = latest
    return out
