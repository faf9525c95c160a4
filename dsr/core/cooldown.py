"""The cool-down before an erasure: an erasure of a subject with a completed export waits until that export's
completion plus ``erase_cooldown_days``, so the person can download the package first. Pure: requests in,
waiting times out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from dsr.core.requests import Request

__all__ = ["erase_waits"]


def erase_waits(requests: Iterable[Request], cooldown_days: int, now: dt.datetime) -> dict[str, dt.datetime]:
    """Open erasure request id -> when it may proceed, for every erasure still cooling down at ``now``.

    A completed export's completion time is its ``updated_at`` (the completion is its last change)."""
    if cooldown_days <= 0:
        return {}
    rows = list(requests)
    wait = dt.timedelta(days=cooldown_days)
    until: dict[str, dt.datetime] = {}
    for r in rows:
        if r.kind == "export" and r.status == "completed":
            at = r.updated_at + wait
            until[r.subject_id] = max(at, until.get(r.subject_id, at))
    return {r.request_id: until[r.subject_id] for r in rows
            if r.kind == "erase" and r.status != "completed" and r.subject_id in until and until[r.subject_id] > now}
