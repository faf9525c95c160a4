"""Physical removal of a table's versions before one version (the purge of :mod:`dsr.steps.purge`), delta-rs.

``purge_through(uri, version)`` makes every version before the *purge point* unreadable and removes what only
those versions held, keeping every version from the point on readable. The point is ``version`` (the newest
due erase commit), moved later when files carrying deletion vectors must be rewritten. Every step is safe to
be killed in, and a purge run again with the same ``version`` resumes at the same point and finishes:

1. files that still carry deletion vectors are rewritten without the masked rows: by the caller's ``rewrite``
   when given (Spark's ``REORG TABLE ... APPLY (PURGE)`` on delta-spark and Databricks), else by a delta-rs
   UPDATE that sets each row to itself, over the partitions of those files (over the whole table when a
   partition column is personal: the UPDATE's predicate goes into the commit info, which is kept). The point
   becomes the first version from which no snapshot references a file with a deletion vector
   (:func:`purge_point`, read from the log: the same answer before and after a crash);
2. VACUUM with zero retention, keeping the files of the versions from the point on; then the change-data files
   written through the point, Spark's ``.part-*.crc`` checksums whose data file is gone, and files no kept
   version references that hold a sought key in its column (``sought``: per subject column, the erased people's
   keys of its kind; a file no log action names is still the person's data);
3. a checkpoint at the point, checked and cleaned of tombstones; then the log before it is cut
   (:mod:`dsr.delta.logcut`: old checkpoints deleted, commits replaced by stubs);
4. directories left empty (a ``user_id=<id>`` partition directory is personal data), and on S3 the folder
   markers of emptied prefixes, are removed.

Nothing in steps 2-4 removes anything a version from the point on needs, so the table reads at every moment.
``plan`` lists what a purge would remove without writing (``--dry-run``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from dsr.delta import access, crashpoints, logcut, objects, physical, rawlog, storage
from dsr.delta import tables as deltautil

__all__ = ["PurgePlan", "plan", "purge_point", "purge_through"]


@dataclass
class PurgePlan:
    """What a purge through ``version`` removes (paths relative to the table)."""

    uri: str
    version: int  # the oldest version still readable afterwards
    current: int
    dv_files: list[str] = field(default_factory=list)  # live files carrying deletion vectors, to rewrite
    data_files: list[str] = field(default_factory=list)  # removed data and change-data files, to delete
    log_files: list[str] = field(default_factory=list)  # commits, checkpoints, sidecars before the purge point
    bytes: int = 0
    dv_rewrite: str = "delta-rs"  # what rewrote the deletion-vector files: delta-rs, or the caller's rewrite

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "unreadable_versions": _span(0, self.version - 1),
                "dv_files_rewritten": len(self.dv_files), "dv_rewrite": self.dv_rewrite if self.dv_files else None,
                "data_files_removed": len(self.data_files),
                "log_files_removed": len(self.log_files), "bytes_removed": self.bytes}


def _span(first: int, last: int) -> str:
    return "none" if last < first else (str(first) if first == last else f"{first}..{last}")


def _files(uri: str) -> dict[str, int]:
    """Every file below the table outside its log (relative path -> size)."""
    return {rel: size for _, _, rel, size in storage.walk(uri) if not rel.startswith("_delta_log/")}


def _dv_files(uri: str, version: int | None = None) -> list[str]:
    """Files carrying a deletion vector in the table's snapshot (the latest, or ``version``): relative paths."""
    import pyarrow as pa

    table = access.open_table(uri, version)
    _, base = storage.filesystem(uri)
    rows = pa.table(table.deletion_vectors()).column("filepath").to_pylist()
    return sorted(_relative(str(p), base) for p in rows)


def _relative(path: str, base: str) -> str:
    path = unquote(path)
    for prefix in (base.rstrip("/") + "/", "file://" + base.rstrip("/") + "/"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def _commit_actions(uri: str, log: logcut.LogFiles, first: int, last: int,
                    kinds: tuple[str, ...]) -> Iterable[tuple[int, str, dict[str, Any]]]:
    """(version, kind, action) of the JSON commits ``first..last``."""
    filesys, base = storage.filesystem(uri)
    for v in range(first, last + 1):
        if v in log.commits:
            for kind, action in rawlog.log_actions(filesys, f"{base}/{log.commits[v]}", kinds):
                yield v, kind, action


def purge_point(uri: str, version: int) -> int:
    """The version a purge through ``version`` keeps readable from: ``version``, or the log's floor when an
    interrupted purge already cut it later, moved past the last version whose snapshot still references a file
    carrying a deletion vector (those files hold masked rows). Read from the log alone, so a purge killed after
    its rewrite commit finds the same point again."""
    log = logcut.listing(uri)
    begin = max(version, logcut.floor(uri, log))
    current = int(access.open_table(uri).version())
    if begin >= current:
        return begin
    masked = {logcut._canonical(p) for p in _dv_files(uri, begin)}
    last = begin - 1 if not masked else begin
    for v, kind, action in _commit_actions(uri, log, begin + 1, current, ("remove", "add")):
        path = logcut._canonical(str(action.get("path", "")))
        if kind == "remove":
            masked.discard(path)
        elif action.get("deletionVector"):
            masked.add(path)
        if masked:
            last = v
    return max(begin, last + 1)


def _cdc_named(uri: str, log: logcut.LogFiles, first: int, last: int) -> list[str]:
    """Change-data files the commits ``first..last`` name (their ``cdc`` actions)."""
    return [str(a["path"]) for _, _, a in _commit_actions(uri, log, first, last, ("cdc",))]


def _checksums_orphaned(files: Mapping[str, int], gone: Collection[str]) -> list[str]:
    """Spark's ``.NAME.crc`` checksums whose data file ``NAME`` is not on disk (or is about to go)."""
    out = []
    for rel in files:
        folder, _, name = rel.rpartition("/")
        if name.startswith(".") and name.endswith(".crc"):
            data = f"{folder}/{name[1:-4]}" if folder else name[1:-4]
            if data not in files or data in gone:
                out.append(rel)
    return sorted(out)


Holds = Callable[[list[str]], set[str]]
"""Given parquet files below a table (as on disk), those holding one of the searched keys in a row: who reads
them (the engine's reader: on Spark, the cluster). None: read here, row by row (:func:`physical.holds_any`)."""


def _holding(uri: str, rels: Iterable[str], sought: Sequence[physical.Sought], holds: Holds | None = None) -> list[str]:
    """The files among ``rels`` that hold one of the keys of a sought column: in a ``column=value`` directory on
    their path, or in a row of the column (read by ``holds``, else here); each column with its own keys (and
    fold), never another's."""
    sought = [s for s in sought if any(k is not None for k in s.keys)]
    if not sought:
        return []
    filesys, base = storage.filesystem(uri)
    out = set()
    unnamed = []
    for rel in rels:
        if any(s.names_key(rel) for s in sought):
            out.add(rel)
        elif rel.endswith(".parquet"):
            unnamed.append(rel)
    if holds is not None:
        out |= holds(unnamed) if unnamed else set()
    else:
        out |= {rel for rel in unnamed if any(physical.holds_any(filesys, f"{base}/{rel}", s.names,
                                                                 [str(k) for k in s.keys if k is not None], s.fold)
                                              for s in sought)}
    return sorted(out)


def plan(uri: str, version: int, *, sought: Sequence[physical.Sought] = (), holds: Holds | None = None) -> PurgePlan:
    """What ``purge_through(uri, version)`` would remove, without writing anything (``sought``: the subject
    columns and their keys to find in unreferenced files; ``holds``: who reads those files for them)."""
    table = access.open_table(uri)
    current = int(table.version())
    point = purge_point(uri, version)
    out = PurgePlan(uri=uri, version=point, current=current, dv_files=_dv_files(uri))
    if out.dv_files:
        point = current + 1  # the rewrite's commit (its plan: every version before it)
    files = _files(uri)
    disk = _OnDisk(files)
    log = logcut.listing(uri)
    keep = list(range(min(point, current), current + 1))
    vacuumed = disk.of(table.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False,
                                    keep_versions=keep))
    unreferenced = disk.of(table.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False,
                                        keep_versions=keep, full=True))
    unreferenced -= vacuumed | disk.of(_cdc_named(uri, log, keep[0] + 1, current))
    doomed = vacuumed | disk.of(_cdc_named(uri, log, 0, min(point, current)))
    doomed |= set(_holding(uri, sorted(unreferenced), sought, holds))
    out.data_files = sorted(doomed | set(_checksums_orphaned(files, doomed)))
    out.log_files = sorted(set(logcut.removable(log, point, uri))
                           | {rel for v, rel in log.commits.items() if v <= point})
    sizes = {**files, **log.sizes}
    out.bytes = sum(sizes.get(p, 0) for p in out.data_files + out.log_files)
    return out


class _OnDisk:
    """The table's files by their canonical path: a path from the log (escaped once or twice) or from a VACUUM
    (escaped as the object store names it) found as the file on disk."""

    def __init__(self, files: Mapping[str, int]) -> None:
        self._by_canonical = {logcut._canonical(rel): rel for rel in files}

    def of(self, paths: Iterable[str]) -> set[str]:
        """The files on disk among ``paths``."""
        return {rel for p in paths if (rel := self._by_canonical.get(logcut._canonical(str(p)))) is not None}


def _rewrite_dv_files(uri: str, dv_files: list[str], private: Collection[str]) -> None:
    """Rewrite the files carrying deletion vectors (each row set to itself): the new files hold only the live
    rows. Over their partitions first, by their partition values, when no partition column is in ``private``
    (the UPDATE's predicate goes into the commit info); then over the whole table if files with deletion vectors
    are left (a partition value whose text the predicate does not match: a timestamp's, say)."""
    table = access.open_table(uri)
    meta = table.metadata()
    first = table.schema().fields[0].name
    commit = deltautil.commit_properties({"dsr.operation": "purge-rewrite"})
    if meta.partition_columns and not set(meta.partition_columns) & set(private):
        import pyarrow as pa

        adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        parts = {tuple((c, a.get(f"partition.{c}")) for c in meta.partition_columns)
                 for a in adds if unquote(str(a["path"])) in set(dv_files)}
        if parts:
            predicate = " OR ".join("(" + " AND ".join(
                f'"{c}" IS NULL' if v is None else f'CAST("{c}" AS STRING) = {_literal(v)}' for c, v in p) + ")"
                for p in sorted(parts))
            table.update(updates={f'"{first}"': f'"{first}"'}, predicate=predicate, commit_properties=commit)
            if not _dv_files(uri):
                return
            table = access.open_table(uri)
    table.update(updates={f'"{first}"': f'"{first}"'}, predicate="true", commit_properties=commit)


def _literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _remove_empty_dirs(uri: str) -> None:
    """Local: folders left empty (outside the log). S3: folder markers (``prefix/`` keys) of prefixes that hold
    nothing else."""
    from pyarrow import fs

    filesys, base = storage.filesystem(uri)
    if storage.is_remote(uri):
        _remove_markers(uri)
        return
    dirs = sorted((i.path for i in filesys.get_file_info(fs.FileSelector(base, recursive=True))
                   if i.type == fs.FileType.Directory and "/_delta_log" not in i.path[len(base):]),
                  key=len, reverse=True)
    for d in dirs:
        if not filesys.get_file_info(fs.FileSelector(d)):
            filesys.delete_dir(d)


def _remove_markers(uri: str) -> None:
    client = objects.s3_client()
    bucket, prefix = objects.split(uri)
    prefix = prefix.rstrip("/") + "/"
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    markers = [k for k in keys if k.endswith("/")]
    empty = [m for m in markers if not any(k != m and k.startswith(m) and not k.endswith("/") for k in keys)]
    objects.delete(uri, [k[len(prefix):] for k in empty if k != prefix])


def purge_through(uri: str, version: int, *, private: Collection[str] = (), sought: Sequence[physical.Sought] = (),
                  rewrite: tuple[str, Callable[[str], int]] | None = None, scratch: str | None = None,
                  holds: Holds | None = None) -> PurgePlan:
    """Remove every version before the purge point of ``version`` (:func:`purge_point`); returns what was
    removed. ``private``: the table's personal columns (never put in a rewrite's predicate); ``sought``: per
    subject column, its names on disk and the erased people's keys of its kind (and the fold of a kind that
    normalises), to find files no version references that hold them (none given: such files are left);
    ``rewrite``: (its name, a function that rewrites the table's deletion-vector files and returns the version
    it committed), used instead of delta-rs; ``scratch``: a folder of the lake where the new checkpoint is built
    (default: ``_dsr_scratch`` in the table's folder), emptied before and after; ``holds``: who reads the
    unreferenced files for the keys. Run again after a crash at any point, it finishes the same purge."""
    scratch = scratch or storage.join(uri, "_dsr_scratch")
    logcut.clear(scratch)  # a killed purge's leftovers hold the log's tombstones
    dv = _dv_files(uri)
    if dv:
        (rewrite[1] if rewrite else lambda u: _rewrite_dv_files(u, dv, private))(uri)
        crashpoints.reached("purge.dv_rewritten")
        if _dv_files(uri):
            from dsr.errors import TableError

            raise TableError(f"files of {uri} still carry deletion vectors after their rewrite (a writer added "
                             "some meanwhile?): nothing was removed; run the purge again")
    done = plan(uri, version, sought=sought, holds=holds)
    done.dv_files, done.dv_rewrite = dv, rewrite[0] if rewrite else "delta-rs"
    point = done.version
    table = access.open_table(uri)
    table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False,
                 keep_versions=list(range(point, int(table.version()) + 1)))
    crashpoints.reached("purge.vacuumed")
    objects.delete(uri, done.data_files)
    crashpoints.reached("purge.data_files_deleted")
    logcut.checkpoint(uri, point, _files(uri), scratch)
    logcut.clear(scratch)
    logcut.cut(uri, point)
    _remove_empty_dirs(uri)
    crashpoints.reached("purge.dirs_removed")
    return done
