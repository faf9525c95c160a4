"""Export packages (and documents from before packages) that must go: those older than ``export_ttl_days``,
and those of people whose erasure was purged (the erasure supersedes the copy they were given). Names and
counts only; never reads a person's rows (a package's age is its file's modification time)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from typing import Any

from dsr.delta import objects, storage

__all__ = ["DOCUMENT_NAMES", "delete_documents", "documents_of", "expired_documents"]

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
    """request id -> document path, for every export document older than ``ttl_days`` (found by name under the
    exports root)."""
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


DOCUMENT_NAMES = ("{}.zip", "{}.zip.sealed", "{}.json")  # a package, a sealed package, a document before packages


def documents_of(exports: str, request_ids: Iterable[str]) -> dict[str, list[str]]:
    """request id -> the names of its documents present under ``exports`` (found by name below the policy's
    exports root, never by a path stored elsewhere: a copied or restored lake names its own exports)."""
    from pyarrow import fs

    wanted = {name.format(rid): rid for rid in request_ids for name in DOCUMENT_NAMES}
    filesys, base = storage.filesystem(exports)
    out: dict[str, list[str]] = {}
    for info in filesys.get_file_info(fs.FileSelector(base, allow_not_found=True)):
        if info.type == fs.FileType.File and info.base_name in wanted:
            out.setdefault(wanted[info.base_name], []).append(info.base_name)
    return out


def delete_documents(exports: str, request_ids: Iterable[str]) -> set[str]:
    """Delete the documents of these requests under ``exports``; returns the request ids that had one."""
    found = documents_of(exports, request_ids)
    objects.delete(exports, [name for names in found.values() for name in names])
    return set(found)
