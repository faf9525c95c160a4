"""Verification's second line of evidence on a cluster reader: what the writer's own reader says, checked against
what it did not produce.

On Spark, Spark's Delta reader is the writer's reader: a defect of the writer (a remove path written differently
from its add, so the old file stays live for every other reader) or of that reader (column-mapped columns read
as NULL) could make it agree with itself. So, for every table verified on the cluster:

1. **The file list comes from delta-rs** (this process, the log only): the live files at the version checked,
   their statistics (rows, NULL counts of the subject column), partition values, deletion vectors (delta-rs reads
   the vectors' own files) and the subject column's physical name.
2. **The cluster reads exactly those files as plain Parquet** by the physical name (no Delta reader involved):
   their rows, non-NULL subject values and erased keys. The files the run's erase commits added are instead
   read **in this process** with the log's deletion vectors applied (few: an erase rewrites, or marks, only the
   files holding erased rows). A file with a deletion vector the run did not add is read on the cluster; only
   when it holds an erased key physically is it read here, to apply its vector.
3. **They must agree:** no erased key in any live row of those files; Spark's Delta row count equals the files'
   live rows; its non-NULL count lies within what the files hold; and the plain reads match the log's own
   statistics (a plain read that missed the column would show). When the subject is a partition column, the
   log's partition values are the evidence, and no file is read.

Sail's timestamp-partition MERGE (the old file stays live) shows as erased keys in a file delta-rs lists; a
blind read of a column-mapped subject column shows as a non-NULL count the files contradict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dsr.delta import access, commits, plainfiles
from dsr.engines.reading import Reader, SubjectPass

__all__ = ["Evidence", "export_disagreement", "gather"]


@dataclass(frozen=True)
class Evidence:
    """What the files say, beside what the cluster's Delta reader said."""

    hits: int
    """Erased keys in live rows of the live files."""
    rows: int | None
    """Live rows of the live files (deletion vectors applied; None: not known, partition statistics missing)."""
    non_null_low: int
    non_null_high: int | None
    """Bounds of the non-NULL subject values among those rows."""
    plain_rows: int
    plain_non_null: int
    """What the plain reads returned for files whose statistics the log holds (before deletion vectors)."""
    log_rows: int | None
    log_non_null: int | None
    """What the log's statistics say of those same files (None: incomplete statistics)."""
    files_here: int
    files_cluster: int
    note: str

    def frame_values(self, seen: SubjectPass) -> dict[str, int]:
        return {"hits_in_files": self.hits, "delta_rows_read": seen.rows, "delta_non_null_read": seen.non_null,
                "plain_rows": self.plain_rows, "plain_non_null": self.plain_non_null}

    def params(self) -> dict[str, Any]:
        return {"files_rows_low": self.rows if self.rows is not None else 0, "files_rows_high": self.rows,
                "non_null_low": self.non_null_low, "non_null_high": self.non_null_high,
                "log_rows_low": self.log_rows if self.log_rows is not None else 0, "log_rows_high": self.log_rows,
                "log_non_null_low": self.log_non_null if self.log_non_null is not None else 0,
                "log_non_null_high": self.log_non_null}


def _added_by(uri: str, versions: Iterable[int]) -> set[str]:
    """Paths (as logged) the given commits added."""
    out: set[str] = set()
    for v in versions:
        out.update(path for path, _ in commits.commit_actions(uri, v).adds)
    return out


def _sum_stat(actions: list[dict[str, Any]], key: str) -> int | None:
    values = [a.get(key) for a in actions]
    return None if any(v is None for v in values) else int(sum(values))  # type: ignore[arg-type]


def gather(reader: Reader, uri: str, column: str, info: access.TableInfo, keys: Any,
           erase_versions: Iterable[int]) -> Evidence:
    """The files' account of the table at ``info.version`` for the erased ``keys`` (see the module doc)."""
    version = info.version
    physical = info.physical_name(column)
    ctype = info.schema.field(column).type
    actions = plainfiles.live_actions(uri, version)
    vectors = plainfiles.deletion_vectors(uri, version)
    if column in info.partition_columns:
        return _from_partitions(actions, vectors, column, physical, keys)
    added = _added_by(uri, erase_versions)
    here = [str(a["path"]) for a in actions if str(a["path"]) in added]
    plain = [a for a in actions if str(a["path"]) not in added and str(a["path"]) not in vectors]
    marked = [a for a in actions if str(a["path"]) not in added and str(a["path"]) in vectors]

    local = plainfiles.file_pass(uri, here, physical, ctype, keys, vectors)
    cluster = reader.file_pass(uri, [str(a["path"]) for a in plain], physical, ctype, keys)
    rows, low, high, hits = local.rows + cluster.rows, local.non_null + cluster.non_null, \
        local.non_null + cluster.non_null, local.hits + cluster.hits
    note = (f"{len(actions)} live file(s) listed by delta-rs: {len(plain) + len(marked)} read as plain Parquet "
            f"{reader.where}, {len(here)} added by the erase read in this process")
    plain_rows, plain_nn = cluster.rows, cluster.non_null
    checked = list(plain)
    if marked:
        paths = [str(a["path"]) for a in marked]
        on_cluster = reader.file_pass(uri, paths, physical, ctype, keys)
        if on_cluster.hits:  # an erased key physically there: is it masked? read here with the vectors
            masked_pass = plainfiles.file_pass(uri, paths, physical, ctype, keys, vectors)
            rows, low, high, hits = (rows + masked_pass.rows, low + masked_pass.non_null,
                                     high + masked_pass.non_null, hits + masked_pass.hits)
            note += f"; {len(paths)} file(s) with older deletion vectors held erased keys: read in this process"
        else:
            gone = sum(plainfiles.masked(vectors[p]) for p in paths)
            rows, low, high = rows + on_cluster.rows - gone, low + max(0, on_cluster.non_null - gone), \
                high + on_cluster.non_null
        plain_rows, plain_nn = plain_rows + on_cluster.rows, plain_nn + on_cluster.non_null
        checked += marked
    log_rows = _sum_stat(checked, "num_records")
    nulls = _sum_stat(checked, f"null_count.{physical}") if checked else 0
    log_nn = None if log_rows is None or nulls is None else log_rows - nulls
    return Evidence(hits=hits, rows=rows, non_null_low=low, non_null_high=high, plain_rows=plain_rows,
                    plain_non_null=plain_nn, log_rows=log_rows, log_non_null=log_nn, files_here=len(here),
                    files_cluster=len(plain) + len(marked), note=note)


def _from_partitions(actions: list[dict[str, Any]], vectors: dict[str, Any], column: str, physical: str,
                     keys: Any) -> Evidence:
    """The subject is a partition column: the log's partition values and row counts are the evidence."""
    found = plainfiles.partition_pass(actions, vectors, column, physical, keys)
    return Evidence(hits=found.hits, rows=found.rows if found.complete else None,
                    non_null_low=found.non_null if found.complete else 0,
                    non_null_high=found.non_null if found.complete else None, plain_rows=0, plain_non_null=0,
                    log_rows=0, log_non_null=0, files_here=0, files_cluster=0,
                    note=f"{len(actions)} live file(s) listed by delta-rs; the subject is a partition column: "
                         "the log's partition values are the evidence"
                         + ("" if found.complete else " (incomplete statistics: row counts not compared)"))


# --- the export's cross-check ---------------------------------------------------------------------------------


def _may_hold(action: dict[str, Any], physical: str, keys: list[Any]) -> bool:
    """Whether the log's min/max statistics of a file leave room for one of the (sorted) keys. Missing or
    possibly truncated bounds (long strings) leave room: only a file the log rules out is skipped."""
    import bisect

    low, high = action.get(f"min.{physical}"), action.get(f"max.{physical}")
    if low is None or high is None:
        return True
    if isinstance(low, str) and (len(low) >= 32 or len(str(high)) >= 32):
        return True
    try:
        at = bisect.bisect_left(keys, low)
        return at < len(keys) and keys[at] <= high
    except TypeError:  # keys and bounds of types that do not compare: no pruning
        return True


def export_disagreement(reader: Reader, uri: str, column: str, info: access.TableInfo, keys: Any,
                        rows_found: int) -> str | None:
    """Why the cluster's Delta reader's rows of the requested keys cannot be trusted (None: they can).

    The files the log says may hold a key (min/max statistics) are read as plain Parquet on the cluster by the
    subject column's physical name: the Delta reader must have found at least the rows of files without deletion
    vectors, and at most those plus the rows of files with them. A blind reader (column mapping missed: every
    subject NULL) finds none and is caught; so is one that returns rows the files do not hold.
    """
    wanted = sorted({k for k in ([] if keys is None else keys.to_pylist()) if k is not None}, key=lambda k: (
        type(k).__name__, k))
    if not wanted:
        return None
    version = info.version
    physical = info.physical_name(column)
    actions = plainfiles.live_actions(uri, version)
    vectors = plainfiles.deletion_vectors(uri, version)
    if column in info.partition_columns:
        from_log = plainfiles.partition_pass(actions, vectors, column, physical, keys)
        if not from_log.complete or from_log.hits == rows_found:
            return None
        return (f"the Delta reader found {rows_found} row(s) of the requested subjects, the log's partition "
                f"values {from_log.hits}")
    same_type = len({type(k) for k in wanted}) == 1
    candidates = [a for a in actions if not same_type or _may_hold(a, physical, wanted)]
    ctype = info.schema.field(column).type
    plain = reader.file_pass(uri, [str(a["path"]) for a in candidates if str(a["path"]) not in vectors], physical,
                             ctype, keys)
    marked_paths = [str(a["path"]) for a in candidates if str(a["path"]) in vectors]
    marked = reader.file_pass(uri, marked_paths, physical, ctype, keys) if marked_paths else None
    low, high = plain.hits, plain.hits + (marked.hits if marked else 0)
    if low <= rows_found <= high:
        return None
    return (f"the Delta reader found {rows_found} row(s) of the requested subjects, the table's files hold "
            f"{low if low == high else f'{low} to {high}'} ({len(candidates)} of {len(actions)} live file(s) read "
            f"as plain Parquet {reader.where})")
