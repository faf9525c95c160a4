"""Physical removal of old table versions up to one version (the purge of :mod:`dsr.steps.purge`), delta-rs.

``purge_through(uri, version)`` makes every version before ``version`` unreadable and removes what only those
versions held, keeping every version from ``version`` on readable:

1. files that still carry deletion vectors are rewritten without the masked rows: by the caller's ``rewrite``
   when given (the Spark engine's ``REORG TABLE ... APPLY (PURGE)`` on delta-spark and Databricks), else by a
   delta-rs UPDATE that sets each row to itself, over the partitions of those files (over the whole table when
   a partition column is personal: the UPDATE's predicate goes into the commit info, which is kept); the purge
   point moves to that commit, since the versions before it reference the old files;
2. VACUUM with zero retention, keeping the files of the versions from the purge point on: every data file
   removed at or before it goes; change-data files written at or before it too;
3. a checkpoint at the purge point; then the JSON commits through it, older checkpoints and their sidecars are
   deleted, and the tombstones of vacuumed files are dropped from the remaining checkpoints, so no log entry
   keeps statistics or partition values of a removed file;
4. directories left empty (a ``user_id=<id>`` partition directory is personal data) are removed.

``plan`` lists all of it without writing (``--dry-run``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from dsr.delta import access, rawlog, storage

__all__ = ["PurgePlan", "plan", "purge_through"]

_CHECKSUM = re.compile(r"^(\d{20})\.crc$")  # a commit's checksum file, beside its JSON


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


def _listing(uri: str) -> tuple[Any, str, dict[str, int]]:
    """The table's filesystem, its base path, and every file below it (relative path -> size)."""
    filesys, base = storage.filesystem(uri)
    return filesys, base, {rel: size for _, _, rel, size in storage.walk(uri)}


def _log_entries(filesys: Any, base: str, files: dict[str, int], through: int) -> list[str]:
    """Commits (and their checksums) through ``through``, checkpoints before it, and v2 sidecars no remaining
    checkpoint references."""
    out, kept = [], []
    for rel in files:
        if not rel.startswith("_delta_log/") or rel.count("/") != 1:
            continue
        name = rel.split("/", 1)[1]
        commit = rawlog.COMMIT.match(name) or _CHECKSUM.match(name)
        checkpoint = rawlog.CHECKPOINT.match(name)
        if (commit and int(commit.group(1)) <= through) or (checkpoint and int(checkpoint.group(1)) < through):
            out.append(rel)
        elif checkpoint:
            kept.append(rel)
    referenced = {s for rel in kept for s in _sidecars_of(filesys, f"{base}/{rel}")}
    out += [rel for rel in files if rel.startswith("_delta_log/_sidecars/") and rel.rsplit("/", 1)[1] not in referenced]
    return sorted(out)


def _sidecars_of(filesys: Any, path: str) -> set[str]:
    """File names of the sidecars a (v2) checkpoint references."""
    return {str(a["path"]).rsplit("/", 1)[-1] for _, a in rawlog.log_actions(filesys, path, ("sidecar",))}


def _cdc_files(filesys: Any, base: str, files: dict[str, int], through: int) -> list[str]:
    """Change-data files written by the commits through ``through`` (from their ``cdc`` actions)."""
    from urllib.parse import unquote

    found = []
    for rel in files:
        name = rel.split("/", 1)[1] if rel.startswith("_delta_log/") else ""
        if (m := rawlog.COMMIT.match(name)) and int(m.group(1)) <= through:
            found += [path for _, a in rawlog.log_actions(filesys, f"{base}/{rel}", ("cdc",))
                      if (path := unquote(a["path"])) in files]
    return sorted(found)


def _dv_files(uri: str) -> list[str]:
    """Live files that carry a deletion vector (relative paths)."""
    import pyarrow as pa

    table = access.open_table(uri)
    _, base = storage.filesystem(uri)
    rows = pa.table(table.deletion_vectors()).column("filepath").to_pylist()
    return sorted(_relative(str(p), base) for p in rows)


def plan(uri: str, version: int, dv_files: list[str] | None = None) -> PurgePlan:
    """What ``purge_through(uri, version)`` would remove, without writing anything (``dv_files``: the files
    carrying deletion vectors, when the caller listed them already)."""
    table = access.open_table(uri)
    current = int(table.version())
    out = PurgePlan(uri=uri, version=version, current=current,
                    dv_files=_dv_files(uri) if dv_files is None else dv_files)
    filesys, base, files = _listing(uri)
    keep = list(range(version, current + 1))
    removed = table.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False, keep_versions=keep)
    out.data_files = sorted({_relative(p, base) for p in removed} | set(_cdc_files(filesys, base, files, version)))
    out.log_files = _log_entries(filesys, base, files, version)
    out.bytes = sum(files.get(p, 0) for p in out.data_files + out.log_files)
    return out


def _relative(path: str, base: str) -> str:
    from urllib.parse import unquote

    path = unquote(path)
    for prefix in (base.rstrip("/") + "/", "file://" + base.rstrip("/") + "/"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def _rewrite_dv_files(uri: str, dv_files: list[str], private: Collection[str]) -> int:
    """Rewrite the files carrying deletion vectors (each row set to itself, over their partitions, or over the
    whole table when a partition column is in ``private``): the new files hold only the live rows. Returns the
    version of that commit."""
    table = access.open_table(uri)
    meta = table.metadata()
    schema = table.schema()
    first = schema.fields[0].name
    predicate = "true"
    if meta.partition_columns and not set(meta.partition_columns) & set(private):
        from urllib.parse import unquote

        import pyarrow as pa

        adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        parts = {tuple((c, a.get(f"partition.{c}")) for c in meta.partition_columns)
                 for a in adds if unquote(str(a["path"])) in set(dv_files)}
        if parts:
            predicate = " OR ".join("(" + " AND ".join(
                f'"{c}" IS NULL' if v is None else f'CAST("{c}" AS STRING) = {_literal(v)}' for c, v in p) + ")"
                for p in sorted(parts))
    table.update(updates={f'"{first}"': f'"{first}"'}, predicate=predicate)
    return int(access.open_table(uri).version())


def _literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _canonical(path: str) -> str:
    """A file path with every level of percent-escaping undone (delta-rs escapes partition paths twice in the
    log, ``k=a%2520b``, for the directory ``k=a%20b``), so log paths and vacuumed paths compare equal."""
    from urllib.parse import unquote

    while (decoded := unquote(path)) != path:
        path = decoded
    return path


def _drop_tombstones(filesys: Any, path: str, gone: set[str]) -> None:
    """Rewrite a parquet checkpoint without the ``remove`` rows of files that no longer exist."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with filesys.open_input_file(path) as f:
        data = pq.read_table(f)
    if "remove" not in data.column_names:
        return
    removed = {_canonical(g) for g in gone}
    keep = [not (r and _canonical(str(r["path"])) in removed) for r in data.column("remove").to_pylist()]
    if all(keep):
        return
    with filesys.open_output_stream(path) as f:
        pq.write_table(data.filter(pa.array(keep)), f)


def _remove_empty_dirs(uri: str) -> None:
    from pyarrow import fs

    filesys, base = storage.filesystem(uri)
    if storage.is_remote(uri):
        return  # object stores have no directories: a prefix goes with its last object
    dirs = sorted((i.path for i in filesys.get_file_info(fs.FileSelector(base, recursive=True))
                   if i.type == fs.FileType.Directory and "/_delta_log" not in i.path[len(base):]),
                  key=len, reverse=True)
    for d in dirs:
        if not filesys.get_file_info(fs.FileSelector(d)):
            filesys.delete_dir(d)


def purge_through(uri: str, version: int, *, private: Collection[str] = (),
                  rewrite: tuple[str, Callable[[str], int]] | None = None) -> PurgePlan:
    """Remove every version before ``version`` (or before the deletion-vector rewrite, when one is needed);
    returns what was removed. ``private``: the table's personal columns (never put in a rewrite's predicate);
    ``rewrite``: (its name, a function that rewrites the table's deletion-vector files and returns the version
    it committed), used instead of delta-rs."""
    dv = _dv_files(uri)
    if dv:
        version = rewrite[1](uri) if rewrite else _rewrite_dv_files(uri, dv, private)
    done = plan(uri, version, dv)
    done.dv_rewrite = rewrite[0] if rewrite else "delta-rs"
    filesys, base = storage.filesystem(uri)
    table = access.open_table(uri)
    table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False,
                 keep_versions=list(range(version, int(table.version()) + 1)))
    for rel in done.data_files:
        _delete(filesys, f"{base}/{rel}")
    access.open_table(uri, version).create_checkpoint()
    for rel in done.log_files:
        _delete(filesys, f"{base}/{rel}")
    _, _, files = _listing(uri)
    for rel in files:
        name = rel.split("/", 1)[1] if rel.startswith("_delta_log/") else ""
        if (m := rawlog.CHECKPOINT.match(name)) and m.group(2) == "parquet":
            _drop_tombstones(filesys, f"{base}/{rel}", set(done.data_files))
    _remove_empty_dirs(uri)
    return done


def _delete(filesys: Any, path: str) -> None:
    from pyarrow import fs

    if filesys.get_file_info(path).type == fs.FileType.File:
        filesys.delete_file(path)
