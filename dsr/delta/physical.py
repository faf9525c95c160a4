"""A Delta table read as files, not as a table: where values of one column are physically on disk.

The residue scan asks this layer, for a set of keys of one column, how often each key occurs in every file under
the table's directory, whether the current version references the file or not:

* ``data files`` -- rows of any parquet data file (rows a deletion vector masks included: the file still holds
  them), referenced or not;
* ``change data`` -- rows of ``_change_data/`` files (change data feed);
* ``log statistics`` -- the column's min/max in the statistics of ``add``/``remove``/``cdc`` actions, in JSON
  commits, checkpoints (classic, multi-part, v2 JSON) and v2 sidecars;
* ``partition values`` -- the column's partition value in those actions;
* ``file names`` -- directory names ``column=value`` on the way to a file.

The log and the names are read here. The rows of the data and change-data files are read by whoever
:func:`find_keys` is given (``rows``): by default this process (:func:`rows_in_files`); on the Spark engine, the
cluster (:meth:`dsr.engines.spark_reads.SparkReader.key_rows`), handed the list of files.

A column whose identifier kind normalises (trim, lower, nfkc) is searched with a ``fold``: a function of a pyarrow
array giving each value's canonical text (the caller's: this layer does not know the normalisation). Every value
found (rows, statistics, partition values, directory names) is folded before it is compared with the keys, which
are then canonical forms: a raw variant (``' Jane@X.org'``) left in an old file is found.

Only counts leave this module, never the values. Nothing here writes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from dsr.delta import rawlog, storage

__all__ = ["DATA", "PLACES", "Fold", "RowSearch", "Sought", "find_keys", "folded_text", "holds_any", "place_of",
           "rows_in_files"]

PLACES = ("data files", "change data", "log statistics", "partition values", "file names")
DATA = PLACES[:2]
"""The places whose files' rows are read (the others are the log and the names)."""
_ACTIONS = ("add", "remove", "cdc")

Fold = Callable[[Any], Any]
"""A pyarrow array -> its values' canonical text (a pyarrow string array of the same length)."""

RowSearch = Callable[[Mapping[str, Sequence[str]]], dict[Any, Counter[str]]]
"""Reads the rows of the data and change-data files (place -> paths below the table, as on disk): key -> place ->
rows holding it."""


@dataclass(frozen=True)
class Sought:
    """What to look for in one column: its names on disk (logical and physical), the keys (compared as text),
    and the fold of a column whose identifier kind normalises (None: values compared as they are)."""

    names: frozenset[str]
    keys: tuple[Any, ...]
    fold: Fold | None = None

    def names_key(self, rel: str) -> bool:
        """Whether a ``column=value`` directory on the path of ``rel`` names one of the keys."""
        by_text = {str(k) for k in self.keys if k is not None}
        return any(c in self.names and folded_text(unquote(v), self.fold) in by_text
                   for c, eq, v in (part.partition("=") for part in rel.split("/")[:-1]) if eq)


def folded_text(value: Any, fold: Fold | None) -> str:
    """A value found in the log or a name, as text, folded when the column's kind normalises."""
    if fold is None:
        return str(value)
    import pyarrow as pa

    folded = fold(pa.array([str(value)], pa.string()))[0].as_py()
    return "" if folded is None else str(folded)


def _in_names(rel: str, names: set[str], keys: Mapping[str, Any], seen: set[str],
              fold: Fold | None = None) -> Counter[Any]:
    """Directory names ``column=value`` naming a key, each directory counted once."""
    found: Counter[Any] = Counter()
    parts = rel.split("/")[:-1]
    for depth, part in enumerate(parts):
        column, eq, value = part.partition("=")
        where = "/".join(parts[:depth + 1])
        if eq and column in names and where not in seen and folded_text(unquote(value), fold) in keys:
            seen.add(where)
            found[keys[folded_text(unquote(value), fold)]] += 1
    return found


def _in_action(action: Mapping[str, Any], names: set[str], keys: Mapping[str, Any],
               fold: Fold | None = None) -> tuple[Counter[Any], ...]:
    """(statistics, partition values) hits of one add/remove/cdc action."""
    stats_hits: Counter[Any] = Counter()
    part_hits: Counter[Any] = Counter()
    values = action.get("partitionValues") or {}
    if isinstance(values, list):  # a parquet map: (key, value) pairs
        values = dict(values)
    for name in names:
        if values.get(name) is not None and folded_text(values[name], fold) in keys:
            part_hits[keys[folded_text(values[name], fold)]] += 1
    stats = action.get("stats_parsed") or action.get("stats")
    if isinstance(stats, str) and stats:
        stats = json.loads(stats)
    if isinstance(stats, Mapping):
        for bound in ("minValues", "maxValues"):
            for name in names:
                value = (stats.get(bound) or {}).get(name)
                if value is not None and folded_text(value, fold) in keys:
                    stats_hits[keys[folded_text(value, fold)]] += 1
    return stats_hits, part_hits


def _in_rows(filesys: Any, path: str, column: str, keys: Mapping[str, Any], fold: Fold | None = None) -> Counter[Any]:
    """Rows of one parquet data file whose ``column`` holds a key, folded first when ``fold`` is given (every row
    of the file, masked or not)."""
    import pyarrow.parquet as pq

    with filesys.open_input_file(path) as f:
        pf = pq.ParquetFile(f)
        if column not in pf.schema_arrow.names:
            return Counter()  # a partition column is in the path, not the file
        found: Counter[Any] = Counter()
        for batch in pf.iter_batches(columns=[column], batch_size=65_536):
            values = batch.column(0)
            if fold is not None:
                values = fold(values)
            for value in values.to_pylist():
                if value is not None and str(value) in keys:
                    found[keys[str(value)]] += 1
        return found


def holds_any(filesys: Any, path: str, names: Iterable[str], keys: Iterable[str], fold: Fold | None = None) -> bool:
    """Whether a row of the parquet file at ``path`` holds one of ``keys`` (as text; each value folded first when
    ``fold`` is given) in a column of ``names``."""
    by_text = {k: k for k in keys}
    return any(_in_rows(filesys, path, name, by_text, fold) for name in set(names))


def place_of(rel: str) -> str:
    """The place of a parquet file below a table: ``change data`` under ``_change_data/``, else ``data files``."""
    return "change data" if rel.startswith("_change_data/") or "/_change_data/" in rel else "data files"


def rows_in_files(uri: str, files: Mapping[str, Sequence[str]], names: Collection[str],
                  keys: Iterable[Any], fold: Fold | None = None) -> dict[Any, Counter[str]]:
    """key -> place -> rows of the parquet files (place -> paths below the table at ``uri``, as on disk) holding it
    in a column of ``names``, read in this process; a file without such a column holds none. Compared as text
    (each value folded first when ``fold`` is given)."""
    by_text = {str(k): k for k in keys if k is not None}
    found: dict[Any, Counter[str]] = {}
    if not by_text:
        return found
    filesys, base = storage.filesystem(uri)
    for place, rels in files.items():
        for rel in rels:
            for name in set(names):
                for key, n in _in_rows(filesys, f"{base.rstrip('/')}/{rel}", name, by_text, fold).items():
                    found.setdefault(key, Counter())[place] += n
    return found


def find_keys(uri: str, names: Iterable[str], keys: Iterable[Any], *,
              rows: RowSearch | None = None, fold: Fold | None = None) -> dict[Any, Counter[str]]:
    """key -> place -> count, for every key found anywhere under the table at ``uri``.

    ``names`` are the column's names on disk (logical and physical, when column mapping gives it another);
    ``keys`` are the values sought, compared as text (a partition value or JSON statistic of 12 is ``12``).
    ``rows`` reads the data and change-data files, once, given their list (default: :func:`rows_in_files`, in
    this process; a given ``rows`` folds the rows' values itself); the log and the names are read here. ``fold``:
    the column's values are compared in canonical form (``keys`` are canonical forms).
    """
    by_text = {str(k): k for k in keys if k is not None}
    wanted = set(names)
    found: dict[Any, Counter[str]] = {}
    seen_dirs: set[str] = set()
    files: dict[str, list[str]] = {place: [] for place in DATA}

    def add(place: str, hits: Counter[Any]) -> None:
        for key, n in hits.items():
            found.setdefault(key, Counter())[place] += n

    if not by_text:
        return found
    for filesys, path, rel, _ in storage.walk(uri):
        add("file names", _in_names(rel, wanted, by_text, seen_dirs, fold))
        if rel.startswith("_delta_log/"):
            for _, action in rawlog.log_actions(filesys, path, _ACTIONS):
                stats_hits, part_hits = _in_action(action, wanted, by_text, fold)
                add("log statistics", stats_hits)
                add("partition values", part_hits)
        elif rel.endswith(".parquet"):
            files[place_of(rel)].append(rel)
    in_rows = rows(files) if rows is not None else rows_in_files(uri, files, wanted, by_text.values(), fold)
    for key, places in in_rows.items():
        for place, n in places.items():
            found.setdefault(key, Counter())[place] += n
    return found
