"""The anchor of the audit log, kept outside its Delta table: ``<lake>/<control>/audit_anchor/<version>.json``.

Deleting the newest ``_delta_log/<version>.json`` files of the audit table removes those commits' own record of
the chain's end with them, and the commit before them looks consistent. So after each commit an append also
writes an anchor file = ``{"format": 1, "table_id", "version", "seq", "hash"}``: the audit table's Delta table
id, the version its commit created, and the chain's end at that version (seq -1 and 64 zeros for no events).
Nothing else, no subject id. Each file is written once (its name is the version, which only one commit can
create), whole (one PUT on S3; write and rename locally), after its commit, so writers never overwrite each
other's anchor; the newest few are kept. A log is *anchored* once its table property ``dsr.audit.anchor`` is set
(:func:`ensure_anchored`, by the first append, for new and pre-existing logs alike); the checks themselves
are in :func:`dsr.core.audit.verify_chain`.

Limits: an anchor is only as new as the last append that wrote one, so commits made after it (by a writer that
died before writing its anchor) can be removed unseen; and whoever deletes the newest commits *and* the newest
anchor files (or the anchors and the property) can still hide them. Detecting that needs an anchor dsr's
writers cannot delete (e.g. a bucket with object lock).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dsr.core.policy import Policy
from dsr.delta import storage
from dsr.delta import tables as deltautil

__all__ = [
    "ANCHORED",
    "COMMIT_HASH",
    "COMMIT_SEQ",
    "Anchor",
    "BadAnchor",
    "anchor_uri",
    "commit_info",
    "ensure_anchored",
    "keep_newest",
    "list_anchors",
    "newest_anchor",
    "numbered_files",
    "record_anchor",
    "recorded_end",
    "write_whole",
]

log = logging.getLogger("dsr.core.audit")

ANCHORED = "dsr.audit.anchor"  # audit table property: set once the log keeps an anchor outside itself
ANCHOR_DIR = "audit_anchor"
ANCHOR_FORMAT = 1
ANCHOR_KEEP = 8  # anchor files kept (the newest); verification needs only the newest
ANCHOR_NAME = re.compile(r"^(\d{20})\.json$")

COMMIT_SEQ = "dsr.audit.last_seq"  # every append records the chain's new end in its own commit info too
COMMIT_HASH = "dsr.audit.last_hash"


def anchor_uri(policy: Policy) -> str:
    """Where the anchors of the audit log live: ``<lake>/<control>/audit_anchor`` (beside the table, not in it)."""
    return storage.join(policy.control_uri, ANCHOR_DIR)


@dataclass(frozen=True)
class Anchor:
    """The chain's end (seq, hash) at a version of the audit table (of that Delta table id)."""

    version: int
    seq: int
    hash: str
    table_id: str


class BadAnchor(Exception):
    """An anchor file that cannot be read as one (altered or forged)."""


def write_whole(folder: str, name: str, body: bytes) -> None:
    """Write one small file ``<folder>/<name>`` whole: a single PUT on S3, a write and a rename locally (the
    anchors, and the guard's verified points)."""
    filesys, base = storage.filesystem(folder)
    if storage.is_remote(folder):
        with filesys.open_output_stream(f"{base}/{name}") as out:
            out.write(body)
        return
    filesys.create_dir(base, recursive=True)
    tmp = f"{base}/.{name}.{uuid.uuid4().hex}.tmp"
    with filesys.open_output_stream(tmp) as out:
        out.write(body)
    filesys.move(tmp, f"{base}/{name}")


def numbered_files(folder: str) -> list[tuple[int, str]]:
    """(version, path) of every ``<20 digits>.json`` file in the folder, oldest first."""
    from pyarrow import fs

    filesys, base = storage.filesystem(folder)
    entries = filesys.get_file_info(fs.FileSelector(base, allow_not_found=True))
    found = []
    for e in entries:
        m = ANCHOR_NAME.match(e.base_name)
        if m and e.type == fs.FileType.File:
            found.append((int(m.group(1)), e.path))
    return sorted(found)


def keep_newest(folder: str, keep: int) -> None:
    """Delete all but the newest ``keep`` numbered files of the folder (another writer may have got there
    first)."""
    filesys, _ = storage.filesystem(folder)
    for _, path in numbered_files(folder)[:-keep]:
        with contextlib.suppress(OSError):
            filesys.delete_file(path)


def write_anchor(policy: Policy, anchor: Anchor) -> None:
    """Write one anchor file whole."""
    body = json.dumps(
        {"format": ANCHOR_FORMAT, "table_id": anchor.table_id, "version": anchor.version, "seq": anchor.seq,
         "hash": anchor.hash},
        sort_keys=True, separators=(",", ":"),
    ).encode("utf-8")
    write_whole(anchor_uri(policy), f"{anchor.version:020d}.json", body)


def list_anchors(policy: Policy) -> list[tuple[int, str]]:
    """(version, path) of every anchor file, oldest first."""
    return numbered_files(anchor_uri(policy))


def parse_anchor(raw: bytes, version: int, name: str) -> Anchor:
    try:
        doc = json.loads(raw.decode("utf-8"))
        anchor = Anchor(int(doc["version"]), int(doc["seq"]), str(doc["hash"]), str(doc["table_id"]))
        ok = (doc.get("format") == ANCHOR_FORMAT and anchor.version == version and anchor.seq >= -1
              and re.fullmatch(r"[0-9a-f]{64}", anchor.hash) is not None)
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise BadAnchor(f"the anchor file {name} outside the audit table is not a valid anchor (altered?)")
    return anchor


def newest_anchor(policy: Policy) -> Anchor | None:
    """The newest readable anchor, or None when there is none. Raises BadAnchor for a damaged newest one."""
    filesys, _ = storage.filesystem(anchor_uri(policy))
    for version, path in reversed(list_anchors(policy)):
        try:
            with filesys.open_input_stream(path) as f:
                raw = f.read()
        except FileNotFoundError:
            continue  # pruned by a writer since it was listed: an older one will do
        return parse_anchor(raw, version, path.rsplit("/", 1)[-1])
    return None


def record_anchor(policy: Policy, anchor: Anchor) -> None:
    """After a commit: write its anchor, then drop all but the newest few. A failure here loses no event (the
    anchor is merely behind, which verification accepts), so it is logged, not raised."""
    try:
        write_anchor(policy, anchor)
        keep_newest(anchor_uri(policy), ANCHOR_KEEP)
    except OSError as exc:
        log.warning("audit: could not write the anchor of version %d outside the audit table (%s); "
                    "the next append writes a newer one", anchor.version, type(exc).__name__)


def ensure_anchored(policy: Policy, table: Any, tail: Callable[[Any], tuple[int, str]]) -> None:
    """Turn anchoring on for this log (once): a baseline anchor of the table as it stands (its chain end by
    ``tail``), then the property. In that order, so a log marked anchored always has an anchor unless someone
    deleted it.
    """
    if ANCHORED in table.metadata().configuration:
        return

    def attempt() -> None:
        table.update_incremental()
        if ANCHORED in table.metadata().configuration:
            return
        seq, last = tail(table)
        write_anchor(policy, Anchor(table.version(), seq, last, table.metadata().id))
        table.alter.set_table_properties(
            {ANCHORED: str(ANCHOR_FORMAT)},
            raise_if_not_exists=False,  # not a delta.* property: delta-rs would refuse it otherwise
            commit_properties=deltautil.commit_properties({"dsr.component": "audit", "dsr.operation": "anchor"}),
        )

    deltautil.optimistic(attempt, what="audit anchor setup")


# --- the chain's end as each append records it in its own commit info ----------------------------------------


def commit_info(filesys: Any, version: int) -> dict[str, Any] | None:
    """The commitInfo of one commit of the table filesys is rooted at, or None when its file is gone."""
    try:
        with filesys.open_input_stream(f"_delta_log/{version:020d}.json") as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if '"commitInfo"' in line:
            action = json.loads(line)
            if isinstance(action, dict) and isinstance(action.get("commitInfo"), dict):
                return dict(action["commitInfo"])
    return {}


def recorded_end(table: Any, depth: int = 100) -> tuple[int, str] | None:
    """(seq, hash) of the chain's end as recorded in the newest audit append's commit info, if any.

    Read from the commits of the loaded version and older, not with ``DeltaTable.history()``: delta-rs (1.6)
    reads the newest commits of the log there, whatever version was loaded, so an append committed meanwhile
    would be compared with rows read before it.
    """
    filesys = deltautil.native_filesystem(table)
    newest = table.version()
    for version in range(newest, max(newest - depth, -1), -1):
        commit = commit_info(filesys, version)
        if commit is None:
            return None  # removed by log clean-up: nothing older to find
        if COMMIT_SEQ in commit and COMMIT_HASH in commit:
            try:
                return int(commit[COMMIT_SEQ]), str(commit[COMMIT_HASH])
            except (TypeError, ValueError):
                return None
    return None

