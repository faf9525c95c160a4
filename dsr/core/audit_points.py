"""The guard's verified points of the audit log, kept beside it: ``<lake>/<control>/audit_verified/<version>.json``
= ``{"format": 1, "table_id", "version", "seq", "hash", "files", "files_digest"}``: the audit table's Delta id
and a version at which its chain was found intact, the chain's end there (seq, hash), and its live data files
then (how many, and a digest of their paths, sizes and record counts). No id of a person. Written whole, one
file per version, the newest few kept (as the anchors). :mod:`dsr.core.audit_guard` checks from the newest;
a new log gets its first one from its first append (the empty chain at version 0), so its checks never start
from nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from dsr.core.audit_anchor import keep_newest, numbered_files, write_whole
from dsr.core.policy import Policy
from dsr.delta import storage

__all__ = ["POINT_DIR", "ChainPoint", "files_digest", "live_files", "newest_point", "points_uri", "remember"]

log = logging.getLogger("dsr.core.audit")

POINT_DIR = "audit_verified"
POINT_FORMAT = 1
POINT_KEEP = 8


@dataclass(frozen=True)
class ChainPoint:
    """The audit log as found intact: its Delta table id and version (-1: no log), the chain's end there (seq,
    hash), and its live data files (how many, and the digest of their paths, sizes and record counts)."""

    table_id: str
    version: int
    seq: int
    hash: str
    files: int
    files_digest: str


def points_uri(policy: Policy) -> str:
    """Where the verified points live: ``<lake>/<control>/audit_verified`` (beside the audit table)."""
    return storage.join(policy.control_uri, POINT_DIR)


def remember(policy: Policy, point: ChainPoint) -> None:
    """Record the point, unless the newest recorded one is as new; the newest few are kept. A failure loses
    nothing (the next check starts from an older point, or checks in full), so it is logged, not raised."""
    if point.version < 0:
        return
    try:
        newest = numbered_files(points_uri(policy))
        if newest and newest[-1][0] >= point.version:
            return
        body = json.dumps({"format": POINT_FORMAT, **dataclasses.asdict(point)}, sort_keys=True,
                          separators=(",", ":")).encode("utf-8")
        write_whole(points_uri(policy), f"{point.version:020d}.json", body)
        keep_newest(points_uri(policy), POINT_KEEP)
    except OSError as exc:
        log.warning("audit: could not record the verified point at version %d (%s); the next check starts from "
                    "an older one", point.version, type(exc).__name__)


def newest_point(policy: Policy) -> ChainPoint | None:
    """The newest recorded point; None when there is none or it cannot be read as one."""
    filesys, _ = storage.filesystem(points_uri(policy))
    found = numbered_files(points_uri(policy))
    if not found:
        return None
    version, path = found[-1]
    try:
        with filesys.open_input_stream(path) as f:
            doc = json.loads(f.read().decode("utf-8"))
        point = ChainPoint(str(doc["table_id"]), int(doc["version"]), int(doc["seq"]), str(doc["hash"]),
                           int(doc["files"]), str(doc["files_digest"]))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return point if doc.get("format") == POINT_FORMAT and point.version == version else None


def live_files(table: Any) -> list[dict[str, Any]]:
    """The live data files of the loaded version: path (as the log writes it), size, records, min and max seq
    (None without statistics), and whether a deletion vector masks rows of it."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))
    names = actions.column_names
    n = actions.num_rows

    def col(name: str) -> list[Any]:
        return actions.column(name).to_pylist() if name in names else [None] * n

    dv_cols = [c for c in names if c.startswith("deletionVector")]
    masked = [any(actions.column(c)[i].is_valid for c in dv_cols) for i in range(n)]
    return [{"path": p, "size": s, "records": r, "min": lo, "max": hi, "dv": d}
            for p, s, r, lo, hi, d in zip(col("path"), col("size_bytes"), col("num_records"), col("min.seq"),
                                          col("max.seq"), masked, strict=True)]


def files_digest(files: list[dict[str, Any]]) -> tuple[int, str]:
    """(how many, sha256 of their sorted path, size and record count lines)."""
    lines = sorted(f"{f['path']}\t{f['size']}\t{f['records']}\n" for f in files)
    return len(lines), hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
