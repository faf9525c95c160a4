"""Cutting a table's Delta log at a version, so that no log entry before it survives, crash-safely.

The order is what makes a crash at any point harmless (README: "Crash safety"):

1. :func:`checkpoint` -- a checkpoint at the cut version is written (by delta-rs, atomically: a staged file
   renamed into place, one PUT on S3), checked against the files the JSON commits say the version holds, and
   rewritten without tombstones of files that are gone (``remove`` actions keep a removed file's partition
   values: ``user_id=<id>``), each rewrite one atomic replace; ``_last_checkpoint`` is made to name a
   complete checkpoint at or after the cut, atomically too. Until then nothing is removed: the JSON commits
   still rebuild every version.
2. :func:`cut` -- checkpoints before the cut go (with their sidecars, commit checksums and compacted logs),
   then every JSON commit up to the cut is replaced, oldest first, by a *stub*: a commit holding only a
   ``commitInfo`` and a ``protocol`` action that names a reader and writer feature no engine implements.

Why stubs instead of deleting the commits: a writer outside dsr that loaded the table before the cut and
commits after it writes the version after its snapshot with put-if-absent. A deleted commit is a free name:
the write "succeeds" into the middle of the log, below the checkpoint, where no reader ever looks -- the
writer's data is silently lost. A stub keeps the name taken, so the writer sees a concurrent commit that
changed the protocol: a conflict it reports and can retry from a fresh snapshot (``ProtocolChanged`` on
delta-rs, ``ProtocolChangedException`` on Spark). A reader asked for a version before the cut replays the
stubs and stops at the unknown feature: a loud error, never a table silently missing rows. Readers of the
cut version and later start from its checkpoint and never read a stub.

:func:`floor` tells where a log can be read from, so a purge that was killed part-way resumes at the version
it had chosen (the oldest checkpoint, once stubbing began).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from dsr.delta import crashpoints, objects, rawlog, storage

__all__ = ["STUB_FEATURE", "LogFiles", "checkpoint", "clear", "cut", "floor", "is_stub", "listing", "removable"]

STUB_FEATURE = "dsrPurgedHistory"
_CHECKSUM = re.compile(r"^(\d{20})\.crc$")  # a commit's checksum, beside its JSON
_COMPACTED = re.compile(r"^(\d{20})\.(\d{20})\.compacted\.json$")  # log compaction files
_STAGED = re.compile(r"^(\d{20})\..*#\d+$")  # object_store's staging name of a commit or checkpoint being written


@dataclass
class LogFiles:
    """A table's ``_delta_log``, by kind (paths relative to the table)."""

    commits: dict[int, str] = field(default_factory=dict)
    checkpoints: dict[int, list[str]] = field(default_factory=dict)
    checksums: dict[int, str] = field(default_factory=dict)
    compacted: dict[str, int] = field(default_factory=dict)  # path -> the last version it covers
    sidecars: list[str] = field(default_factory=list)
    staged: dict[str, int] = field(default_factory=dict)  # path -> version, for files left half written
    temporary: list[str] = field(default_factory=list)  # dsr's own temporary files left by a crash
    sizes: dict[str, int] = field(default_factory=dict)


def listing(uri: str) -> LogFiles:
    """Every file of the table's log, by kind."""
    out = LogFiles()
    for _, _, rel, size in storage.walk(storage.join(uri, "_delta_log")):
        path = f"_delta_log/{rel}"
        out.sizes[path] = size
        name = rel.rsplit("/", 1)[-1]
        if rel.startswith("_sidecars/"):
            out.sidecars.append(path)
        elif "/" in rel:
            continue
        elif m := rawlog.COMMIT.match(name):
            out.commits[int(m.group(1))] = path
        elif m := rawlog.CHECKPOINT.match(name):
            out.checkpoints.setdefault(int(m.group(1)), []).append(path)
        elif m := _CHECKSUM.match(name):
            out.checksums[int(m.group(1))] = path
        elif m := _COMPACTED.match(name):
            out.compacted[path] = int(m.group(2))
        elif m := _STAGED.match(name):
            out.staged[path] = int(m.group(1))
        elif name.endswith(objects.TEMPORARY):
            out.temporary.append(path)
    return out


def is_stub(data: bytes) -> bool:
    """Whether a commit's bytes are a stub this module wrote."""
    return STUB_FEATURE.encode() in data[:4096] and b'"dsrPurged"' in data[:4096]


def floor(uri: str, log: LogFiles) -> int:
    """The oldest version the log can rebuild: 0 when commit 0 is there and no stub, else the oldest
    checkpoint (a cut that began left stubs below it, oldest first)."""
    first = log.commits.get(0)
    if first is not None:
        data = objects.read(uri, first)
        if data is not None and not is_stub(data):
            return 0
    return min(log.checkpoints, default=min(log.commits, default=0))


def _stub(original: bytes | None) -> bytes:
    stamp = None
    for line in (original or b"").decode("utf-8", errors="replace").splitlines():
        try:
            info = json.loads(line).get("commitInfo")
        except (ValueError, AttributeError):
            continue
        if isinstance(info, dict) and isinstance(info.get("timestamp"), int):
            stamp = info["timestamp"]
    info = {"timestamp": stamp or 0, "operation": "PURGED HISTORY", "operationParameters": {},
            "isBlindAppend": False, "dsrPurged": True}
    protocol = {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": [STUB_FEATURE],
                "writerFeatures": [STUB_FEATURE]}
    return (json.dumps({"commitInfo": info}) + "\n" + json.dumps({"protocol": protocol}) + "\n").encode()


def _canonical(path: str) -> str:
    """A file path with every level of percent-escaping undone (delta-rs escapes partition paths twice in the
    log, ``k=a%2520b``, for the directory ``k=a%20b``), so log paths and listed paths compare equal."""
    while (decoded := unquote(path)) != path:
        path = decoded
    return path


def _read_parquet(uri: str, rel: str) -> Any:
    import io

    import pyarrow.parquet as pq

    data = objects.read(uri, rel)
    if data is None:
        raise FileNotFoundError(rel)
    return pq.read_table(io.BytesIO(data))


def _parquet_bytes(table: Any) -> bytes:
    import io

    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _adds(data: Any) -> set[str]:
    if "add" not in data.column_names:
        return set()
    return {_canonical(str(a["path"])) for a in data.column("add").to_pylist() if a}


def _segment(log: LogFiles, version: int) -> list[str]:
    """The log files that rebuild ``version``: the newest checkpoint at or before it (its parts and the sidecars
    a v2 one names are copied along) and the commits after it, through ``version``."""
    base = max((v for v in log.checkpoints if v <= version), default=-1)
    missing = [v for v in range(base + 1, version + 1) if v not in log.commits]
    if missing:
        from dsr.errors import TableError

        raise TableError(f"the log lacks commit {missing[0]} (needed to rebuild version {version}): nothing was "
                         "removed")
    return [*log.checkpoints.get(base, []), *(log.commits[v] for v in range(base + 1, version + 1))]


def _built(uri: str, version: int, log: LogFiles, scratch: str) -> tuple[Any, set[str]]:
    """The checkpoint delta-rs writes at ``version``, written in ``scratch`` (a copy of the log segment below
    the lake's control folder, never the table's own log: readers must never see it with its tombstones), and
    the files the segment's log says the version holds."""
    import pyarrow as pa

    clear(scratch)
    wanted = _segment(log, version)
    sidecars = _sidecars_of(uri, [r for r in wanted if ".checkpoint." in r])
    for rel in wanted + [r for r in log.sidecars if r.rsplit("/", 1)[1] in sidecars]:
        data = objects.read(uri, rel)
        if data is None:
            raise FileNotFoundError(rel)
        objects.write_whole(scratch, rel, data)
    from deltalake import DeltaTable

    table = DeltaTable(scratch, version=version, storage_options=storage.storage_options(scratch))  # never kept
    expected = {_canonical(str(p)) for p in pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()}
    table.create_checkpoint()
    parts = listing(scratch).checkpoints.get(version, [])
    if len(parts) != 1 or not parts[0].endswith(".parquet"):
        raise ValueError(f"delta-rs wrote {len(parts)} checkpoint file(s) at version {version}")
    return _read_parquet(scratch, parts[0]), expected


def clear(scratch: str) -> None:
    """Remove ``scratch`` and everything under it (a checkpoint built there holds the log's tombstones)."""
    import shutil

    objects.delete(scratch, [rel for _, _, rel, _ in storage.walk(scratch)])
    if not storage.is_remote(scratch):
        shutil.rmtree(scratch, ignore_errors=True)  # the folders (on S3 a prefix goes with its last object)


def checkpoint(uri: str, version: int, present: Iterable[str], scratch: str) -> None:
    """A complete checkpoint at ``version`` without tombstones of files not in ``present`` (the table's data
    files on disk, relative paths), and ``_last_checkpoint`` naming it or a newer complete checkpoint.

    A missing checkpoint is built in ``scratch``, checked against the files the log says the version holds,
    cleaned of tombstones, and written into the log once, as a new file: readers never see a checkpoint being
    replaced (a reader that took a checkpoint's size, then read the bytes of its replacement, would fail on a
    corrupt footer). Only a checkpoint another writer put at that version is cleaned in place, atomically.
    Newer checkpoints holding such tombstones are deleted when the commits after ``version`` rebuild their
    version without them, else cleaned in place."""
    from dsr.errors import TableError

    log = listing(uri)
    on_disk = {_canonical(p) for p in present}
    name = f"_delta_log/{version:020d}.checkpoint.parquet"
    if version not in log.checkpoints:
        data, expected = _built(uri, version, log, scratch)
        if _adds(data) != expected:
            raise TableError(f"the checkpoint built at version {version} of {uri} does not hold the files the log "
                             "says it should: nothing was removed")
        objects.create_exclusive(uri, name, _parquet_bytes(_without_tombstones(data, on_disk)))
        clear(scratch)
        crashpoints.reached("purge.checkpoint_written")
        log = listing(uri)
    newer = [v for v in sorted(log.checkpoints) if v > version and _holds_gone(uri, log, v, on_disk)]
    rebuilt = [v for v in newer if all(c in log.commits for c in range(version + 1, v + 1))]
    for v in [version, *(v for v in newer if v not in rebuilt)]:
        for rel in log.checkpoints[v]:
            if rel.endswith(".parquet"):
                _drop_tombstones(uri, rel, on_disk)
    _point_last_checkpoint(uri, log, [v for v in log.checkpoints if v >= version and v not in rebuilt])
    for v in rebuilt:  # the commits after the cut rebuild its version: no reader needs it
        objects.delete(uri, log.checkpoints[v])
    crashpoints.reached("purge.tombstones_dropped")


def _without_tombstones(data: Any, on_disk: set[str]) -> Any:
    """A checkpoint's rows without the ``remove`` rows of files not in ``on_disk``."""
    import pyarrow as pa

    if "remove" not in data.column_names:
        return data
    keep = [not (r and _canonical(str(r["path"])) not in on_disk) for r in data.column("remove").to_pylist()]
    return data if all(keep) else data.filter(pa.array(keep))


def _holds_gone(uri: str, log: LogFiles, version: int, on_disk: set[str]) -> bool:
    """Whether a checkpoint at ``version`` keeps tombstones of files not on disk."""
    return any(rel.endswith(".parquet") and _without_tombstones(data := _read_parquet(uri, rel), on_disk) is not data
               for rel in log.checkpoints[version])


def _drop_tombstones(uri: str, rel: str, on_disk: set[str]) -> None:
    """Rewrite one parquet checkpoint (atomically, in place) without ``remove`` rows of files not on disk."""
    data = _read_parquet(uri, rel)
    kept = _without_tombstones(data, on_disk)
    if kept is not data:
        objects.write_whole(uri, rel, _parquet_bytes(kept))


def _point_last_checkpoint(uri: str, log: LogFiles, kept: list[int]) -> None:
    """Make ``_last_checkpoint`` name the newest of the checkpoints that stay (``kept``), with its true size."""
    newest = max(kept)
    parts = sorted(log.checkpoints[newest])
    if not all(p.endswith(".parquet") for p in parts):
        return  # a JSON (v2) checkpoint: its writer's _last_checkpoint stands
    tables = [_read_parquet(uri, p) for p in parts]
    sizes = listing(uri).sizes
    want: dict[str, Any] = {"version": newest, "size": sum(t.num_rows for t in tables),
                            "sizeInBytes": sum(sizes.get(p, 0) for p in parts),
                            "numOfAddFiles": sum(len(_adds(t)) for t in tables)}
    if len(parts) > 1:
        want["parts"] = len(parts)
    raw = objects.read(uri, "_delta_log/_last_checkpoint")
    try:
        have = json.loads(raw) if raw else None
    except ValueError:
        have = None
    if isinstance(have, dict) and all(have.get(k) == v for k, v in want.items()):
        return
    objects.write_whole(uri, "_delta_log/_last_checkpoint", json.dumps(want).encode())


def _sidecars_of(uri: str, rels: Iterable[str]) -> set[str]:
    """File names of the sidecars these (v2) checkpoints reference."""
    filesys, base = storage.filesystem(uri)
    return {str(a["path"]).rsplit("/", 1)[-1] for rel in rels
            for _, a in rawlog.log_actions(filesys, f"{base}/{rel}", ("sidecar",))}


def removable(log: LogFiles, version: int, uri: str) -> list[str]:
    """What :func:`cut` deletes (commits it stubs not included): checkpoints before ``version``, sidecars no
    kept checkpoint references, checksums and compacted logs through it, staged and temporary leftovers."""
    kept = [rel for v, rels in log.checkpoints.items() if v >= version for rel in rels]
    referenced = _sidecars_of(uri, kept)
    out = [rel for v, rels in log.checkpoints.items() if v < version for rel in rels]
    out += [rel for rel in log.sidecars if rel.rsplit("/", 1)[1] not in referenced]
    out += [rel for v, rel in log.checksums.items() if v <= version]
    out += [rel for rel, last in log.compacted.items() if last <= version]
    out += [rel for rel, v in log.staged.items() if v <= version] + log.temporary
    return sorted(out)


def cut(uri: str, version: int) -> int:
    """Remove every log entry before ``version`` (after :func:`checkpoint`): delete what :func:`removable`
    lists, then stub the commits through it, oldest first. Returns how many log files were removed or stubbed
    (stubs already there not counted)."""
    log = listing(uri)
    if version not in log.checkpoints:
        raise ValueError(f"no checkpoint at version {version}: write it first")
    gone = removable(log, version, uri)
    objects.delete(uri, gone)
    crashpoints.reached("purge.old_checkpoints_deleted")
    stubbed = 0
    for v in sorted(v for v in log.commits if v <= version):
        rel = log.commits[v]
        data = objects.read(uri, rel)
        if data is None or is_stub(data):
            continue
        objects.write_whole(uri, rel, _stub(data))
        stubbed += 1
        crashpoints.reached("purge.commit_stubbed")
    return len(gone) + stubbed
