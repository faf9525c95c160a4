"""File events of a purge, seen from outside its process, and the kill at one of them.

A *file event* is a write, rewrite or deletion of one path below a scenario's roots (``lake/...``,
``exports/...``). Its *kind* says where and what, never which person: ``table:checkpoint:rewrite``,
``control:commit:write``, ``exports:package:delete``... (:func:`kind_of`). Trials name an event by its kind and
its rank among the events of that kind (``table:log:delete#3``): file names carry random parts, ranks do not.

:class:`Recorder` numbers the events as they come and decides the kill; it is shared by the two observers:

* :class:`LocalWatch` -- inotify (``ctypes``, Linux) on every folder below the roots, folders added as they
  appear. It is asynchronous: the kill lands as soon as the event is read, shortly after the write began;
* the moto server of ``moto_hook.py`` -- sees each S3 request before it is answered (and before it is applied).

A crash-point trace file (``DSR_CRASH_TRACE``) can be watched too: each line the process appends is an event of
kind ``crashpoint``, so one local trace run orders crash points and file events on one time line.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CRASHPOINT", "DEFAULT_FAMILIES", "S3_DEFAULT_FAMILIES", "FileEvent", "LocalWatch", "Recorder", "family",
           "kind_of"]

CRASHPOINT = "crashpoint"
_COMMIT = re.compile(r"^\d{20}\.json$")
_STAGED = re.compile(r"(#\d+|\.tmp|\.temp)$|^_commit_|^\.tmp")  # object_store's staged writes, delta-rs' commit temp
_OWN = {"requests": "control", "audit": "audit", "audit_anchor": "audit", "suppression": "suppression"}


def kind_of(rel: str, op: str, control: str = "_dsr") -> str:
    """``scope:what:op`` of an event on ``rel`` (``lake/<table>/...`` or ``exports/...``); ``op`` is write,
    rewrite (a path that existed), delete, or dir-delete."""
    parts = rel.split("/")
    name = parts[-1]
    if parts[0] in ("exports", "outside"):  # outside: below neither root (the original lake's exports...)
        what = "package" if re.match(r"^req_[0-9a-f]+\.(zip|zip\.sealed|json)$", name) else "file"
        return f"{parts[0]}:{what}:{op}"
    if parts[0] == CRASHPOINT:
        return CRASHPOINT
    inner = parts[1:]
    scope = "table"
    if inner and inner[0] == control:
        scope = _OWN.get(inner[1] if len(inner) > 1 else "", "dsr")
        if len(inner) > 1 and inner[1] == "audit_anchor":
            return f"audit:anchor:{op}"
    if op == "dir-delete":
        return f"{scope}:dir:delete"
    if rel.endswith("/"):  # an S3 folder marker (pyarrow writes one when a folder's last file goes)
        return f"{scope}:dir_marker:{op}"
    if "_delta_log" in inner:
        if _STAGED.search(name):
            what = "temp"
        elif name == "_last_checkpoint":
            what = "last_checkpoint"
        elif _COMMIT.match(name):
            what = "commit"
        elif ".checkpoint" in name or "_sidecars" in inner:
            what = "checkpoint"
        elif name.endswith(".crc"):
            what = "commit_crc"
        else:
            what = "log_other"
        if op == "delete" and what in ("commit", "checkpoint", "commit_crc", "last_checkpoint"):
            return f"{scope}:log:delete"
    elif _STAGED.search(name):
        what = "temp"
    elif name.endswith(".crc"):
        what = "crc"
    elif name.endswith(".parquet"):
        what = "data"
    elif name.startswith("deletion_vector_"):
        what = "dv"
    else:
        what = "other"
    return f"{scope}:{what}:{op}"


def family(kind: str) -> str:
    """A coarser kind: what one default trial stands for (``DEFAULT_FAMILIES``) and what a trace is summed by.
    A checkpoint written over an existing one is a log rewrite; ``_last_checkpoint`` is one family however
    written; temporary files are one family per scope however written or removed."""
    scope, what, op = [*kind.split(":"), "", ""][:3]
    if scope == CRASHPOINT or scope in ("exports", "outside"):
        return kind
    if what == "last_checkpoint":
        return f"{scope}:last_checkpoint"
    if what == "checkpoint" and op == "rewrite":
        return f"{scope}:log:rewrite"
    if what in ("temp", "log_other", "commit_crc", "dir_marker"):
        return f"{scope}:{what}"
    return kind


# One default trial each (``make test``), the list: a new commit, a new checkpoint, ``_last_checkpoint``,
# a data file deleted, a log file deleted, a checkpoint rewritten, the control table's new commit (its
# rewrite) and its log cleaned, a package deleted. The full sweep (``make test-crash``) kills at every event.
DEFAULT_FAMILIES = ("table:commit:write", "table:checkpoint:write", "table:last_checkpoint", "table:data:delete",
                    "table:log:delete", "table:log:rewrite", "table:commit:rewrite", "control:commit:write",
                    "control:log:delete", "exports:package:delete")
# On S3 a trial costs 20-30 s (moto answers ~1,700 requests per purge): make test tries the kinds where a crash
# did damage before (a checkpoint, the log's stubs, the control table; a package deletion is tried locally);
# make test-crash tries them all
S3_DEFAULT_FAMILIES = ("table:checkpoint:write", "table:commit:rewrite", "control:commit:write")


@dataclass(frozen=True)
class FileEvent:
    """One event: its kind, its rank among the events of that kind (1-based), the path (relative to the
    scenario's roots), and when (``time.monotonic``)."""

    kind: str
    rank: int
    rel: str
    at: float = 0.0
    count: int = 1  # paths in it (an S3 batch delete names many)

    @property
    def label(self) -> str:
        return f"{self.kind}#{self.rank}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rank": self.rank, "rel": self.rel, "at": self.at, "count": self.count}


@dataclass
class Recorder:
    """Numbers events by kind; ``target`` (kind, rank): the one to kill at, ``kill`` does it (once)."""

    target: tuple[str, int] | None = None
    kill: Callable[[], None] | None = None
    events: list[FileEvent] = field(default_factory=list)
    killed_at: FileEvent | None = None
    _ranks: Counter[str] = field(default_factory=Counter)

    def add(self, rel: str, op: str, count: int = 1) -> FileEvent:
        kind = kind_of(rel, op)
        self._ranks[kind] += 1
        event = FileEvent(kind, self._ranks[kind], rel, time.monotonic(), count)
        self.events.append(event)
        if self.killed_at is None and self.target == (kind, event.rank) and self.kill is not None:
            self.kill()
            self.killed_at = event
        return event


# --- local: inotify through ctypes ------------------------------------------------------------------------

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x100, 0x200, 0x4000, 0x8000, 0x40000000
_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
_HEADER = struct.Struct("iIII")


class LocalWatch:
    """inotify on every folder below ``roots`` (name -> folder); events go to ``recorder`` as they are read.

    A write is reported once per open-write-close of a path (at its first create, modify or rename-into-place);
    ``rewrite`` when the path existed before. Deleted folders are reported too (``dir-delete``)."""

    def __init__(self, roots: Mapping[str, Path], recorder: Recorder) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.recorder = recorder
        self._dirs: dict[int, str] = {}  # watch descriptor -> folder, relative (``lake/events/_delta_log``)
        self._known: set[str] = set()  # files that exist (relative)
        self._writing: set[str] = set()  # files between their first write and their close
        self.overflowed = False
        for name, folder in roots.items():
            folder.mkdir(parents=True, exist_ok=True)
            self._add_tree(folder, name, report=False)
        self._base = {name: folder for name, folder in roots.items()}

    def _add_tree(self, folder: Path, rel: str, *, report: bool) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), _MASK)
        if wd < 0:
            return  # gone already
        self._dirs[wd] = rel
        for child in sorted(folder.iterdir()) if folder.is_dir() else []:
            child_rel = f"{rel}/{child.name}"
            if child.is_dir():
                self._add_tree(child, child_rel, report=report)
            else:
                if report and child_rel not in self._known:
                    self.recorder.add(child_rel, "write")
                self._known.add(child_rel)

    def _folder(self, rel: str) -> Path:
        root, _, rest = rel.partition("/")
        return self._base[root] / rest if rest else self._base[root]

    def poll(self, timeout: float) -> list[FileEvent]:
        """Read what is there (waiting up to ``timeout`` seconds for the first); returns the new events."""
        import select

        before = len(self.recorder.events)
        ready, _, _ = select.select([self.fd], [], [], timeout)
        while ready:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            self._parse(data)
            ready, _, _ = select.select([self.fd], [], [], 0)
        return self.recorder.events[before:]

    def _parse(self, data: bytes) -> None:
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, size = _HEADER.unpack_from(data, offset)
            raw = data[offset + _HEADER.size: offset + _HEADER.size + size]
            offset += _HEADER.size + size
            if mask & IN_Q_OVERFLOW:
                self.overflowed = True
                continue
            if mask & IN_IGNORED or wd not in self._dirs:
                continue
            name = os.fsdecode(raw.rstrip(b"\0"))
            rel = f"{self._dirs[wd]}/{name}"
            self._one(rel, mask)

    def _one(self, rel: str, mask: int) -> None:
        if mask & IN_ISDIR:
            if mask & (IN_CREATE | IN_MOVED_TO):
                self._add_tree(self._folder(rel), rel, report=True)
            elif mask & IN_DELETE:
                self.recorder.add(rel, "dir-delete")
            return
        if mask & (IN_CREATE | IN_MODIFY | IN_MOVED_TO) and rel not in self._writing:
            self.recorder.add(rel, "rewrite" if rel in self._known else "write")
            self._known.add(rel)
            if not mask & IN_MOVED_TO:
                self._writing.add(rel)
        if mask & IN_CLOSE_WRITE:
            self._writing.discard(rel)
        if mask & IN_MOVED_FROM:
            self._known.discard(rel)
            self._writing.discard(rel)
        if mask & IN_DELETE:
            self._known.discard(rel)
            self._writing.discard(rel)
            self.recorder.add(rel, "delete")

    def close(self) -> None:
        os.close(self.fd)

