"""Every file a process opens, seen by ``strace``: the data files the dsr process reads, counted from outside it.

:func:`traced` runs a command under ``strace -f`` and returns a :class:`Trace`: each successful open of the process
and of every thread and child process it starts (``open``, ``openat``, ``openat2``, ``creat``,
``open_by_handle_at``), each path as the kernel resolved it (``strace -y`` decodes the returned descriptor; the
path argument against its directory descriptor when it cannot), and, with ``reads=True``, the bytes each file gave
through ``read``, ``pread64``, ``readv``, ``preadv``, ``preadv2``, ``sendfile``, ``copy_file_range``, ``splice``
(and the length of each ``mmap`` of it). delta-rs is Rust: its opens never pass through Python's ``open`` nor its
audit hooks, so they are counted at the system call, where every reader must pass.

Fail closed: a trace that records no open at all (strace could not attach), a process that sets up ``io_uring``
(whose opens strace cannot see), or a relative open it cannot resolve raises :class:`TraceError`, never an empty
count. :func:`data_files` keeps the data files of one table (``*.parquet`` outside ``_delta_log/``);
:func:`commit_adds` lists the files a table's commits added (what the dsr process may read on Spark).
"""

from __future__ import annotations

import codecs
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["Open", "Trace", "TraceError", "commit_adds", "data_files", "strace", "traced"]

OPENS = ("open", "openat", "openat2", "creat", "open_by_handle_at")
READS = ("read", "pread64", "readv", "preadv", "preadv2")
COPIES = ("sendfile", "copy_file_range", "splice")  # the source descriptor is the first (sendfile: second)
_WATCH = ("io_uring_setup", "chdir", "fchdir")

_CALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+|0x[0-9a-f]+)(?:<(?P<path>.*)>)?(?:\s.*)?$")
_FD = re.compile(r"^\s*(?:AT_FDCWD|-?\d+)(?:<(?P<path>[^>]*)>)?")
_FDS = re.compile(r"(?:^|, )(?:AT_FDCWD|-?\d+)<([^>]*)>")  # strace -y escapes < and > inside the path
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


class TraceError(RuntimeError):
    """The trace cannot be trusted to show every open: no count is given."""


@dataclass(frozen=True)
class Open:
    """One successful open: the absolute path, its arguments as strace printed them (the flags among them), the
    thread that opened it."""

    path: str
    args: str
    pid: int


@dataclass(frozen=True)
class Trace:
    """What one traced command did: its opens, the bytes read per file (``reads=True``), its exit and output."""

    opens: tuple[Open, ...]
    read_bytes: Mapping[str, int]
    returncode: int
    stdout: str
    stderr: str
    log: Path | None = field(default=None, compare=False)

    @property
    def paths(self) -> frozenset[str]:
        """Every path opened (for reading or writing), O_PATH descriptors excepted (they read nothing)."""
        return frozenset(o.path for o in self.opens if "O_PATH" not in o.args)

    def data_files(self, table: Path | str) -> frozenset[str]:
        """The data files of ``table`` the process opened."""
        return data_files(self.paths, table)

    def bytes_from(self, paths: Iterable[str]) -> int:
        """Bytes the process read from ``paths`` (0 unless traced with ``reads=True``)."""
        return sum(self.read_bytes.get(p, 0) for p in set(paths))


def strace() -> str | None:
    """The ``strace`` binary, or None when it is not installed (``make install`` installs it as root)."""
    return shutil.which("strace")


def traced(argv: Sequence[str], *, cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
           timeout: float = 600, reads: bool = False, log: Path | None = None) -> Trace:
    """Run ``argv`` under ``strace -f`` (only the traced calls stop the process: ``--seccomp-bpf``) and return
    what it opened. ``log``: keep strace's output there (else a temporary file, removed)."""
    binary = strace()
    if binary is None:
        raise TraceError("strace is not installed (apt-get install strace; make install does it as root)")
    calls = [*OPENS, *_WATCH, *((*READS, *COPIES, "mmap") if reads else ())]
    with tempfile.TemporaryDirectory(prefix="dsr-strace-") as tmp:
        out = log or Path(tmp) / "strace.log"
        cmd = [binary, "-f", "--seccomp-bpf", "-qq", "-y", "-s", "0", "-e", "signal=none",
               "-e", "trace=" + ",".join(calls), "-o", str(out), "--", *argv]
        done = subprocess.run(cmd, cwd=cwd, env=dict(env) if env is not None else None, capture_output=True,
                              text=True, timeout=timeout, check=False)
        start = os.path.realpath(cwd or os.getcwd())
        text = out.read_text(encoding="utf-8", errors="surrogateescape") if out.exists() else ""
        opens, read_bytes = _parse(text, start)
    if not opens:
        raise TraceError(f"strace recorded no open (could it attach?): {done.stderr.strip()[-500:]}")
    return Trace(tuple(opens), read_bytes, done.returncode, done.stdout, done.stderr, log)


def data_files(paths: Iterable[str], table: Path | str) -> frozenset[str]:
    """Of ``paths`` (absolute, as a :class:`Trace` gives them), the data files of the table at ``table``:
    ``*.parquet`` under it, outside ``_delta_log/`` (change data and rewritten files count: they hold rows)."""
    root = os.path.realpath(table)
    found = set()
    for p in paths:
        rel = os.path.relpath(p, root)
        if rel.startswith(os.pardir) or not p.endswith(".parquet"):
            continue
        if Path(rel).parts[0] != "_delta_log":
            found.add(p)
    return frozenset(found)


def commit_adds(table: Path | str, versions: Iterable[int]) -> frozenset[str]:
    """The files (absolute paths) the ``add`` actions of the table's commits ``versions`` added, read from
    ``_delta_log/<version>.json`` (paths there are URI-encoded, relative to the table unless absolute)."""
    root = Path(os.path.realpath(table))
    found = set()
    for v in versions:
        for line in (root / "_delta_log" / f"{v:020d}.json").read_text(encoding="utf-8").splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                found.add(_local(root, action["add"]["path"]))
    return frozenset(found)


def _local(root: Path, path: str) -> str:
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return os.path.realpath(unquote(parsed.path))
    if parsed.scheme:
        raise TraceError(f"not a local file: {path}")
    return os.path.realpath(root / unquote(path))


# --- strace's output -----------------------------------------------------------------------------------------


def _calls(text: str) -> Iterable[tuple[int, str]]:
    """(pid, whole call) for each line, a call interrupted by another thread's (``<unfinished ...>``) joined to
    its ``<... resumed>`` rest."""
    pending: dict[int, str] = {}
    for line in text.splitlines():
        pid_text, _, rest = line.partition(" ")
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        rest = rest.strip()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")]
            continue
        if rest.startswith("<..."):
            head = pending.pop(pid, None)
            if head is None:
                raise TraceError(f"a resumed call without its start: {line[:200]}")
            rest = head + rest.split(">", 1)[1]
        yield pid, rest


def _parse(text: str, start_cwd: str) -> tuple[list[Open], dict[str, int]]:
    opens: list[Open] = []
    read_bytes: dict[str, int] = {}
    moved = False  # a chdir: a relative open strace could not decode can no longer be resolved
    for pid, call in _calls(text):
        m = _CALL.match(call)
        if m is None:
            continue
        name, args, ret, path = m["name"], m["args"], m["ret"], m["path"]
        ok = not ret.startswith("-")
        if name == "io_uring_setup" and ok:
            raise TraceError("the process set up io_uring: files it opens through it are invisible to strace")
        if name in ("chdir", "fchdir") and ok:
            moved = True
        elif name in OPENS and ok:
            opens.append(Open(_unescape(path) if path else _argument_path(name, args, start_cwd, moved, call),
                              args, pid))
        elif ok and name in (*READS, *COPIES, "mmap"):
            source, size = _read_of(name, args, int(ret, 0))
            if source is not None and size:
                read_bytes[source] = read_bytes.get(source, 0) + size
    return opens, read_bytes


def _argument_path(name: str, args: str, start_cwd: str, moved: bool, call: str) -> str:
    """The opened path from the arguments, when strace could not decode the returned descriptor."""
    strings = _STRING.findall(args)
    if not strings:
        raise TraceError(f"an open strace could not resolve to a path: {call[:200]}")
    path = _unescape(strings[0])
    if os.path.isabs(path):
        return os.path.normpath(path)
    base = None
    if name in ("openat", "openat2"):
        fd = _FD.match(args)
        base = _unescape(fd["path"]) if fd and fd["path"] else None
    if base is None:
        if moved:
            raise TraceError(f"a relative open after a chdir, its directory unknown: {call[:200]}")
        base = start_cwd
    return os.path.normpath(os.path.join(base, path))


def _read_of(name: str, args: str, ret: int) -> tuple[str | None, int]:
    """The file a read-like call read from, and how many bytes (an mmap: its length, when it maps a file)."""
    fds = _FDS.findall(args)
    if name == "mmap":
        length = re.match(r"^[^,]*, (\d+),", args)
        return (_unescape(fds[0]), int(length[1])) if fds and length else (None, 0)
    at = 1 if name == "sendfile" else 0  # sendfile(out, in, ...); the others read their first descriptor
    return (_unescape(fds[at]) if len(fds) > at else None), ret


def _unescape(text: str) -> str:
    """strace's C escapes (``\\x..``, ``\\ooo``, ``\\"``) back to the path's bytes; a path of a deleted file
    loses strace's `` (deleted)``."""
    raw = codecs.escape_decode(text.encode("utf-8", "surrogateescape"))[0]
    path = bytes(raw).decode("utf-8", "surrogateescape")
    return path.removesuffix(" (deleted)")


def require_strace() -> None:
    """Skip the test when strace is missing; under ``CI=true`` fail it (CI runs the tests that need it)."""
    import os

    import pytest

    if strace() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strace is missing (make install installs Debian's strace package): CI runs this test")
        pytest.skip("strace is missing: apt-get install strace (make install does it as root)")
