"""Export packages (and documents from before packages) that must go: those older than ``export_ttl_days``,
and those of people whose erasure was purged (the erasure supersedes the copy they were given). Names and
counts only; never reads a person's rows (a package's age is its file's modification time)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from dsr.delta import storage

__all__ = ["delete_documents", "expired_documents"]

_DOCUMENT = re.compile(r"^(req_[0-9a-f]{16})\.(?:json|zip|zip\.sealed)$")  # documents (before packages), packages


def _exported_at(filesys: Any, path: str, mtime: dt.datetime | None) -> dt.datetime | None:
    """When the document was written: its ``exported_at``, else (a package) the file's modification time."""
    if not path.endswith(".json"):
        return mtime
    try:
        with filesys.open_input_stream(path) as f:
            stamp = json.loads(f.read().decode("utf-8")).get("exported_at")
        when = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    except (OSError, ValueError, AttributeError):
        return mtime


def expired_documents(exports: str, now: dt.datetime, ttl_days: int) -> dict[str, str]:
    """request id -> document path, for every export document older than ``ttl_days``."""
    from pyarrow import fs

    filesys, base = storage.filesystem(exports)
    cutoff = now - dt.timedelta(days=ttl_days)
    out = {}
    for info in filesys.get_file_info(fs.FileSelector(base, allow_not_found=True)):
        m = _DOCUMENT.match(info.base_name)
        if info.type != fs.FileType.File or not m:
            continue
        mtime = info.mtime if isinstance(info.mtime, dt.datetime) else None
        if mtime is not None and mtime.tzinfo is None:
            mtime = mtime.replace(tzinfo=dt.UTC)
        when = _exported_at(filesys, info.path, mtime)
        if when is not None and when < cutoff:
            out[m.group(1)] = info.path
    return out


def delete_documents(exports: str, documents: Mapping[str, str]) -> set[str]:
    """Delete these documents (request id -> path inside the exports' filesystem, or its URI); returns the
    request ids whose document was there."""
    from pyarrow import fs

    filesys, _ = storage.filesystem(exports)
    gone = set()
    for rid, path in documents.items():
        inside = path.split("://", 1)[1] if "://" in path else path
        if filesys.get_file_info(inside).type == fs.FileType.File:
            filesys.delete_file(inside)
            gone.add(rid)
    return gone
