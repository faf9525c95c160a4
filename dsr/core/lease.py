"""Leases in ``<lake>/<control>/leases/``: a purge never overlaps a run, a sweep or another purge.

A purge cuts the history of tables a run or a sweep reads and writes (a version it reads becomes unreadable, a
commit it wrote lands on a stub). So:

* a run (``dsr run``, or a DAG run from its claim to its completion) and a sweep hold a *shared* lease: the file
  ``shared-<holder>.json``, written by its holder only (taken, renewed, removed). Shared leases never exclude
  each other: runs already exclude each other per request (claims), sweeps per commit;
* ``dsr purge`` holds the *exclusive* lease: the newest ``purge-<epoch>.json``. It is taken by creating the
  next epoch's file, which only one taker can do (put-if-absent: a hard link locally, ``If-None-Match`` on
  S3), once the newest is released or expired; it is given back by marking it released.

Each side writes its own record first, then looks at the other's: a run that finds a purge holding the lease
withdraws its record and waits; a purge that finds live runs waits for them to end (they were first). Whoever
looked second sees the first, so the two never both go ahead. Waiting is bounded by the policy's
``lease_wait_seconds``; then :class:`LeaseHeld` (exit 1) names the holder. Every record expires
``claim_ttl_minutes`` after it was last renewed (a dead holder's lease runs out), and a holder renews when
less than half is left. A lease only one process holds (a purge, a CLI run or sweep, a DAG task) names that
process: on the same machine, a holder killed with -9 is seen gone at once. Records hold ids of runs, sweeps
and purges, times and process ids; never a subject id.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dsr.core.policy import Policy
from dsr.delta import objects, storage
from dsr.errors import DsrError

__all__ = [
    "SKEW", "LeaseHeld", "Record", "exclusive", "folder", "hold", "holders", "release", "renew", "shared",
    "this_process",
]

SKEW = dt.timedelta(seconds=60)  # a record counts as live this long past its expiry (clocks of other machines)
_POLL = 1.0  # seconds between looks while waiting
_EPOCH = re.compile(r"^purge-(\d{12})\.json$")
_SHARED = re.compile(r"^shared-([A-Za-z0-9][A-Za-z0-9_.-]*)\.json$")


class LeaseHeld(DsrError):
    """Another command holds the lease this one needs, past the policy's ``lease_wait_seconds``: exit 1 (the
    DAG's task is retried)."""


@dataclass(frozen=True)
class Record:
    """One lease file's content."""

    holder: str  # the run id, sweep id or purge id
    kind: str  # run | sweep | purge
    expires_at: dt.datetime
    released: bool = False
    process: str | None = None  # "host:pid:start" of the one process that holds it, when only it may (bound)

    def live(self, now: dt.datetime) -> bool:
        """Held: not released, not expired, and, when bound to a process of this machine, that process runs
        (a purge killed with -9 does not make the next one wait out its lease)."""
        return not self.released and now < self.expires_at + SKEW and not _dead(self.process)

    def encode(self) -> bytes:
        return json.dumps({"holder": self.holder, "kind": self.kind, "expires_at": self.expires_at.isoformat(),
                           "released": self.released, "process": self.process}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Record | None:
        try:
            raw = json.loads(data)
            return cls(str(raw["holder"]), str(raw["kind"]), dt.datetime.fromisoformat(raw["expires_at"]),
                       bool(raw.get("released", False)), raw.get("process"))
        except (ValueError, KeyError, TypeError):
            return None  # a torn or foreign file: not a lease


def _start(pid: int) -> str | None:
    """A process's start time (clock ticks after boot) and state, from /proc; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is dead: it only waits to be reaped


def this_process() -> str:
    """This process's identity in a lease: host, pid and start time (a pid can be reused)."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{_start(os.getpid()) or ''}"


def _dead(process: str | None) -> bool:
    """Whether a bound lease's process is known to be gone: on this machine, no such pid, a zombie, or another
    process under that pid. A process of another machine is never known dead: its lease runs out."""
    import socket

    if not process:
        return False
    host, _, rest = process.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    now = _start(int(pid))
    if now is None:
        return os.path.isdir("/proc")  # no stat for a pid that answers kill(0): gone between the two, or a zombie
    return bool(start) and now != start


def folder(policy: Policy) -> str:
    return storage.join(policy.control_uri, "leases")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _names(policy: Policy) -> list[str]:
    from pyarrow import fs

    filesys, base = storage.filesystem(folder(policy))
    return sorted(i.base_name for i in filesys.get_file_info(fs.FileSelector(base, allow_not_found=True))
                  if i.type == fs.FileType.File)


def _read(policy: Policy, name: str) -> Record | None:
    data = objects.read(folder(policy), name)
    return None if data is None else Record.decode(data)


def _newest_epoch(policy: Policy, names: list[str]) -> tuple[int, Record | None]:
    epochs = sorted(int(m.group(1)) for n in names if (m := _EPOCH.match(n)))
    if not epochs:
        return 0, None
    return epochs[-1], _read(policy, f"purge-{epochs[-1]:012d}.json")


def holders(policy: Policy, now: dt.datetime | None = None) -> list[Record]:
    """The live leases: the purge's, if live, then the shared ones."""
    at = now or _now()
    names = _names(policy)
    _, purge = _newest_epoch(policy, names)
    shared_ = [r for n in names if _SHARED.match(n) and (r := _read(policy, n)) is not None]
    return [r for r in ([purge] if purge else []) + shared_ if r.live(at)]


def _ttl(policy: Policy) -> dt.timedelta:
    return dt.timedelta(minutes=policy.claim_ttl_minutes)


def _wait(policy: Policy, until: Callable[[], Record | None], what: str) -> None:
    """Poll ``until`` (None: go ahead; a record: still held by it) for up to ``lease_wait_seconds``."""
    deadline = time.monotonic() + policy.lease_wait_seconds
    while (blocker := until()) is not None:
        if time.monotonic() >= deadline:
            raise LeaseHeld(f"{what}: {blocker.kind} {blocker.holder} holds the lease in {folder(policy)} (until "
                            f"{blocker.expires_at:%Y-%m-%d %H:%M} UTC at the latest); waited "
                            f"{policy.lease_wait_seconds} s. Try again when it has finished")
        time.sleep(_POLL)


def hold(policy: Policy, holder: str, kind: str, *, bound: bool = True) -> None:
    """Take a shared lease for ``holder`` (a run or sweep id), waiting while a purge holds the exclusive one.
    ``bound``: only this process holds it (a CLI run or sweep, a DAG task): gone with it. A DAG run's lease,
    held from its claim task to its completion task, is not bound: it runs out ``claim_ttl_minutes`` after the
    last renewal."""
    name = f"shared-{holder}.json"
    process = this_process() if bound else None

    def blocked() -> Record | None:
        objects.write_whole(folder(policy), name, Record(holder, kind, _now() + _ttl(policy), process=process)
                            .encode())
        _, purge = _newest_epoch(policy, _names(policy))
        if purge is None or not purge.live(_now()):
            return None
        objects.delete(folder(policy), [name])  # withdraw: the purge was first
        return purge

    _wait(policy, blocked, f"{kind} {holder}")


def renew(policy: Policy, holder: str, kind: str) -> None:
    """Keep ``holder``'s shared lease: rewritten when less than half of it is left, taken again (waiting for a
    purge, as :func:`hold`) when it is gone or has run out. Bound or not, as it was taken."""
    mine = _read(policy, f"shared-{holder}.json")
    now = _now()
    bound = mine is not None and mine.process is not None  # gone: taken again unbound (it may span processes)
    if mine is not None and mine.live(now) and now < mine.expires_at:
        if mine.expires_at - now < _ttl(policy) / 2:
            objects.write_whole(folder(policy), f"shared-{holder}.json",
                                Record(holder, kind, now + _ttl(policy), process=mine.process).encode())
        return
    hold(policy, holder, kind, bound=bound)


def release(policy: Policy, holder: str) -> None:
    """Give back ``holder``'s shared lease (nothing when it holds none)."""
    objects.delete(folder(policy), [f"shared-{holder}.json"])


@contextmanager
def shared(policy: Policy, holder: str, kind: str) -> Iterator[None]:
    """Hold a shared lease for the block."""
    hold(policy, holder, kind)
    try:
        yield
    finally:
        release(policy, holder)


@contextmanager
def exclusive(policy: Policy, holder: str) -> Iterator[Callable[[], None]]:
    """Hold the exclusive (purge) lease for the block; yields a function that renews it (call it between
    steps: a purge longer than half of ``claim_ttl_minutes`` must). Waits for the runs and sweeps that hold
    a shared lease to end."""
    epoch = _take(policy, holder)
    name = f"purge-{epoch:012d}.json"

    def runs() -> Record | None:
        live = [r for r in holders(policy) if r.kind != "purge"]
        return live[0] if live else None

    def keep() -> None:
        objects.write_whole(folder(policy), name, Record(holder, "purge", _now() + _ttl(policy),
                                                         process=this_process()).encode())

    try:
        _wait(policy, runs, f"purge {holder}")
        objects.delete(folder(policy), [n for n in _names(policy) if (m := _EPOCH.match(n)) and int(m[1]) < epoch])
        yield keep
    finally:
        objects.write_whole(folder(policy), name, Record(holder, "purge", _now(), released=True,
                                                         process=this_process()).encode())


def _take(policy: Policy, holder: str) -> int:
    """Create the next epoch's record once the newest is released or expired; returns the epoch taken."""
    taken: list[int] = []

    def blocked() -> Record | None:
        epoch, newest = _newest_epoch(policy, _names(policy))
        if newest is not None and newest.live(_now()):
            return newest
        record = Record(holder, "purge", _now() + _ttl(policy), process=this_process())
        if objects.create_exclusive(folder(policy), f"purge-{epoch + 1:012d}.json", record.encode()):
            taken.append(epoch + 1)
            return None
        return Record("another purge", "purge", _now())  # lost the race: look again

    _wait(policy, blocked, f"purge {holder}")
    return taken[0]
