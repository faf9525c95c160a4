"""The audit log checked before a command writes: :func:`require_intact_chain`.

``dsr run`` (and the DAG's claim), ``dsr sweep`` and ``dsr purge`` must not add events, rows or commits on top of
a broken chain. ``dsr audit verify`` recomputes every hash, which grows with the history (500,000 events take
seconds); the guard starts from the newest *verified point* instead (:mod:`dsr.core.audit_points`: a version
of the audit table at which its chain was found intact, the chain's end there and a digest of its live files).

From that point, the incremental check (:func:`_since_point`) needs only the Delta log and the new rows:

* the live files that hold events up to the point's seq are exactly those of the point (same digest): nothing
  was removed, rewritten or added among them (an overwrite, a delete, an edit through Delta all change that);
* every other live file holds only later events, and those rows link on from the point's hash, each hash its
  content's, up to the end the newest append recorded in its commit info;
* the newest anchor outside the table (:mod:`dsr.core.audit_anchor`) is of this table, not ahead of it, and
  its hash is the chain's at its seq.

Anything else (no point, as for a log from before the points, a point of another table or ahead of it, files
changed under it, a file without statistics or with a deletion vector, a damaged point file) falls back to the
full check, ``verify_view``, which names the first broken event. A chain found intact either way gives the point
of the version checked; :func:`remember` records it once the command has written (so a refused command writes
nothing), and dsr's own compaction of the audit table (:func:`compact`) carries it over, so the next check stays
incremental.

Limits: the guard reads the Delta log and the rows added since the point, not the bytes of files already
verified: a data file rewritten in place under the same name and size, or a forged point, is found by
``dsr audit verify`` only (which recomputes every hash, as before).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from dsr.core import audit
from dsr.core.audit_anchor import ANCHORED, BadAnchor, newest_anchor, recorded_end
from dsr.core.audit_chain import ChainBreak, check_links
from dsr.core.audit_points import ChainPoint, files_digest, live_files, newest_point, points_uri, remember
from dsr.core.policy import Policy
from dsr.delta import tables as deltautil
from dsr.errors import AuditChainError

__all__ = ["ChainPoint", "compact", "points_uri", "remember", "require_intact_chain"]

log = logging.getLogger("dsr.core.audit")


def require_intact_chain(policy: Policy) -> ChainPoint:
    """Check the audit log before a command writes; raise AuditChainError (exit 1: one line naming the audit
    table and the first broken event's seq) when its chain is broken. Writes nothing. Incremental from the newest
    verified point (cheap on a long history), else the full check. Returns the point of the version checked, for
    :func:`remember` once the command has written."""
    point = _since_point(policy)
    if point is not None:
        return point
    view = audit.verify_view(policy)
    brk = view.broken or _behind_point(policy, view)
    if brk is not None:
        raise AuditChainError(
            f"the audit log {policy.audit_uri} is broken at event seq {brk.seq} (event_id {brk.event_id}): "
            f"{brk.why}; nothing written: see dsr audit verify, and restore the audit table before writing again"
        )
    if view.table is None:
        return ChainPoint("", -1, -1, audit.GENESIS, 0, "")
    files, digest = files_digest(live_files(view.table))
    return ChainPoint(str(view.table.metadata().id), int(view.table.version()), view.end[0], view.end[1], files,
                      digest)


def _behind_point(policy: Policy, view: audit.ChainView) -> ChainBreak | None:
    """What the newest verified point says of a log the full check passed: like an anchor, it is never ahead of
    the table, nor of another table (versions only grow; a table id changes only with a new table). Someone who
    removed the newest commits *and* the anchors, or replaced the table and its anchors, is caught here."""
    point = newest_point(policy)
    if point is None:
        return None
    if view.table is None:
        if point.seq < 0:
            return None
        return ChainBreak(0, "(missing)", (
            f"the audit table is missing, but the verified point outside it records {point.seq + 1} event(s) at "
            f"table version {point.version}"))
    first = view.end[0] + 1
    if str(view.table.metadata().id) != point.table_id:
        return ChainBreak(0, "(replaced)", (
            f"the audit table was replaced: its Delta table id is not the one the verified point outside it "
            f"records (at version {point.version})"))
    version = int(view.table.version())
    if version < point.version:
        return ChainBreak(first, "(missing)", (
            f"Delta commits {version + 1}..{point.version} of the audit table are missing (a verified point "
            f"outside the table records its chain up to seq {point.seq} at version {point.version})"))
    return None


def compact(policy: Policy, *, max_files: int = 64) -> int:
    """Bin-pack the audit table once it has more than ``max_files`` files (as ``deltautil.compact_small_files``
    does for the control table), and carry the verified point over this compaction: its rows are the ones just
    checked, so the next check need not recompute the whole chain. A chain that does not check out is not
    compacted (the next writing command refuses it); a concurrent commit leaves compaction to the next run.
    Returns the number of files removed."""
    from deltalake.exceptions import CommitFailedError

    table = deltautil.open_table(policy.audit_uri)
    if table is None or len(table.file_uris()) <= max_files:
        return 0
    try:
        point = require_intact_chain(policy)
    except AuditChainError as exc:
        log.warning("audit: not compacted: %s", exc)
        return 0
    table = deltautil.open_table(policy.audit_uri)
    if table.version() != point.version:
        return 0  # appended to since the check: the next run compacts
    try:
        metrics = table.optimize.compact(commit_properties=deltautil.commit_properties(
            {"dsr.component": "audit", "dsr.operation": "compact"}))  # no rebase: the version after the check
    except CommitFailedError:
        return 0
    if table.version() == point.version + 1:
        files, digest = files_digest(live_files(table))
        remember(policy, dataclasses.replace(point, version=int(table.version()), files=files,
                                             files_digest=digest))
    return int(metrics.get("numFilesRemoved", 0))


# --- the incremental check ---------------------------------------------------------------------------------------


def _since_point(policy: Policy) -> ChainPoint | None:
    """The chain checked from the newest verified point (see the module's docstring), or None when that cannot
    be done or does not check out: the full check then decides, and names the break if there is one."""
    from urllib.parse import unquote

    try:
        anchor = newest_anchor(policy)  # the anchor first, the table second (as verify_chain)
    except BadAnchor:
        return None
    point = newest_point(policy)
    if point is None:
        return None
    table = deltautil.open_table(policy.audit_uri)
    if table is None:
        return None
    version, table_id = int(table.version()), str(table.metadata().id)
    if table_id != point.table_id or version < point.version:
        return None
    files = live_files(table)
    if any(f["dv"] or f["min"] is None or f["max"] is None for f in files):
        return None
    old = [f for f in files if f["max"] <= point.seq]
    new = [f for f in files if f["min"] > point.seq]
    if len(old) + len(new) != len(files) or files_digest(old) != (point.files, point.files_digest):
        return None
    rows: list[dict[str, Any]] = []
    if new:
        data = deltautil.read_files(table, [unquote(str(f["path"])) for f in new])
        rows = sorted(data.to_pylist(), key=lambda r: (r["seq"], r["event_id"]))
        if check_links(rows, first=point.seq + 1, prev=point.hash) is not None:
            return None
    end = (int(rows[-1]["seq"]), str(rows[-1]["hash"])) if rows else (point.seq, point.hash)
    if rows and recorded_end(table) != end:
        return None  # events appended outside dsr, or its record removed: the full check names it
    if anchor is None:
        if end[0] >= 0 and ANCHORED in table.metadata().configuration:
            return None  # the anchors deleted (or being written): the full check decides
    elif anchor.table_id != table_id or anchor.version > version:
        return None
    elif anchor.version > point.version:
        hashes = {int(r["seq"]): str(r["hash"]) for r in rows}
        hashes[point.seq] = point.hash
        if hashes.get(anchor.seq) != anchor.hash:
            return None
    count, digest = files_digest(files)
    return ChainPoint(table_id, version, end[0], end[1], count, digest)
