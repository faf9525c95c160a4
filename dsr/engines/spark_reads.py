"""The Spark engine's reader: the heavy reads as Spark jobs, so the cluster reads the data.

Every read here is a DataFrame job whose result is the size of the requests: the rows of the requested people
(a left-semi join with a small broadcast frame of their keys), counts, the erased keys still present. Subject
ids travel as data (the key frames), never as SQL text. Nothing of a table's contents comes back otherwise.

Two readers run on the cluster:

- Spark's Delta reader (``format("delta")``, with time travel by ``versionAsOf``): the writer's own reader, for
  the export, the erase planning and verification's counts;
- Spark's plain Parquet reader over an explicit list of files (:meth:`SparkReader.file_pass`): it knows nothing
  of Delta — the files, their physical column names and their deletion vectors come from delta-rs' log replay
  in this process. Verification compares the two (:mod:`dsr.verify.evidence`). The residue scan
  (:meth:`SparkReader.key_rows`) reads every parquet file under a table's directory the same way, from the
  listing made in this process.

``parquet()`` takes each path as a glob pattern: a partition value such as ``a[1]`` would match other files, or
none. Each file is named literally (:func:`file_location`).
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from functools import reduce
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import unquote

from dsr.delta import access
from dsr.delta.plainfiles import FilePass
from dsr.delta.tableinfo import TableInfo
from dsr.engines.reading import SubjectPass
from dsr.engines.spark_sql import error_for, key_frame, quote
from dsr.errors import TableError

__all__ = ["SparkReader", "file_location", "literal_location", "skipped_by_name", "with_forms"]

_KEY = "__dsr_key"
_FORM = "__dsr_form"
_GROUP = "__dsr_group"
_VALUE = "__dsr_value"
_GLOB = re.compile(r"([\\\[\]*?{}])")


def literal_location(location: str, server: str) -> str:
    """A file's location as ``spark.read.parquet`` reads it literally, never as a glob pattern. Spark's file readers
    take a path as a pattern, not a name. Sail globs a local path and URL-decodes a URL (``part=a%20b`` on S3
    would name ``part=a b``), and takes no backslash: it is given ``file://`` (or the location's own scheme) and
    the path percent-encoded, so every name means itself. Elsewhere (Hadoop's glob on delta-spark, Databricks and
    servers not known to be Sail): ``\\`` before each of ``\\ [ ] * ? { }``."""
    if server != "sail":
        return _GLOB.sub(r"\\\1", location)
    scheme, sep, rest = location.partition("://")
    if not sep:  # a local path (or file:/path)
        scheme, rest = "file", location.removeprefix("file:")
    if scheme == "file":
        return "file://" + url_quote("/" + rest.lstrip("/"), safe="/")
    authority, _, path = rest.partition("/")
    return f"{scheme}://{authority}/{url_quote(path, safe='/')}"


def skipped_by_name(rel: str) -> bool:
    """Whether Spark's file reader skips a file even when it is named: its name starts with ``.`` or ``_``
    (measured on Sail 0.7; Spark's own rule for hidden files). No writer names a data file so: leftovers."""
    name = rel.rsplit("/", 1)[-1]
    return name.startswith((".", "_"))


def _text(value: Any) -> str:
    """A key as the text Spark's ``CAST(... AS STRING)`` gives (a binary one decoded as UTF-8)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _present(keys: Any) -> list[Any]:
    """The keys of a pyarrow Array (or None: none) that can match: NULL never does."""
    return [] if keys is None else [k for k in keys.to_pylist() if k is not None]


def _keys(where_in: tuple[str, Any]) -> list[Any]:
    return _present(where_in[1])


def file_location(base: str, logged: str, server: str) -> str:
    """Where Spark's plain Parquet reader finds one data file of the table at ``base`` (as Spark reads the table):
    ``logged`` is the file's path as the Delta log writes it (relative, URL-encoded), spelled literally
    (:func:`literal_location`)."""
    return literal_location(f"{base.rstrip('/')}/{unquote(logged)}", server)


class SparkReader:
    """Reads on a SparkSession (classic or Connect). ``path`` turns a table uri into the location Spark reads."""

    where = "on the cluster"

    def __init__(self, spark: Any, path: Callable[[str], str], server: str = "unknown") -> None:
        self.spark = spark
        self._path = path
        self.server = server
        """The server kind (:data:`dsr.engines.spark_session.SERVER_KINDS`): how a file's location is spelled."""
        self.jobs = 0
        self._reproduces: dict[tuple[str, ...], str | None] = {}
        """Spark jobs this reader ran (tests read it)."""

    # --- frames ---------------------------------------------------------------------------------------------

    def _table(self, uri: str, version: int | None = None) -> Any:
        """The table as Spark's Delta reader reads it; at ``version`` by time travel unless that is the current
        version (Sail 0.7 cannot time-travel once the log's first commits are gone behind a checkpoint: the
        current version it reads from the checkpoint). A commit landing meanwhile makes the read newer than the
        log's account of ``version``: verification's evidence then disagrees, and fails (retried)."""
        reader = self.spark.read.format("delta")
        if version is not None and self._old(uri, version):
            reader = reader.option("versionAsOf", int(version))
        return reader.load(self._path(uri))

    def _old(self, uri: str, version: int | None) -> bool:
        """Whether ``version`` is given and is not the table's current one."""
        return version is not None and int(version) != int(access.open_table(uri).version())

    def _tally_from_files(self, uri: str, column: str, keys: Any, version: int) -> tuple[int, int, int]:
        """(rows, non-NULL values, values among the keys) at an older ``version`` the cluster's Delta reader cannot
        time-travel to: the files delta-rs' log replay lists live then, read as plain Parquet on the cluster by the
        column's physical name; those with a deletion vector read in this process with it applied (a partition
        column: counted from the log)."""
        from dsr.delta import plainfiles

        info = access.table_info(uri, version)
        physical = info.physical_name(column)
        ctype = info.schema.field(column).type
        actions = plainfiles.live_actions(uri, version)
        vectors = plainfiles.deletion_vectors(uri, version)
        if column in info.partition_columns:
            found = plainfiles.partition_pass(actions, vectors, column, physical, keys)
            if not found.complete:
                raise TableError(f"cannot count version {version} of the Delta table at {uri}: the cluster cannot "
                                 "time-travel to it and its log carries no row counts")
            return found.rows, found.non_null, found.hits
        plain = self.file_pass(uri, [str(a["path"]) for a in actions if str(a["path"]) not in vectors], physical,
                               ctype, keys)
        marked = plainfiles.file_pass(uri, [str(a["path"]) for a in actions if str(a["path"]) in vectors],
                                      physical, ctype, keys, vectors)
        return plain.rows + marked.rows, plain.non_null + marked.non_null, plain.hits + marked.hits

    def _key_frame(self, values: Any, arrow_type: Any) -> Any:
        import pyarrow as pa

        return key_frame(self.spark, pa.table({_KEY: pa.array(values, arrow_type)}))

    def _matching(self, frame: Any, column: str, keys: list[Any], arrow_type: Any) -> Any:
        """The rows of ``frame`` whose ``column`` is one of ``keys``: a left-semi join with a key frame."""
        wanted = self._key_frame(keys, arrow_type)
        return frame.join(wanted, frame[quote(column)] == wanted[_KEY], "left_semi")

    def _arrow(self, frame: Any, what: str, uri: str, keys: Sequence[Any] = ()) -> Any:
        self.jobs += 1
        try:
            return frame.toArrow()
        except Exception as exc:  # a table the cluster cannot read: refused like one the access layer cannot
            raise TableError(str(error_for(f"{what} of {uri} on the cluster", exc, list(keys)))) from None

    # --- the Reader Protocol ---------------------------------------------------------------------------------

    def scan(self, uri: str, columns: Sequence[str], *, where_in: tuple[str, Any], version: int | None = None,
             info: TableInfo | None = None) -> Iterator[Any]:
        info = info or access.table_info(uri, version)
        keys = _keys(where_in)
        if not keys:
            return iter(())
        column = where_in[0]
        frame = self._matching(self._table(uri, version), column, keys, info.schema.field(column).type)
        found = self._arrow(frame.select(*[frame[quote(c)] for c in columns]), "reading the requested rows",
                            uri, keys)
        target = access.target_schema(uri, info, list(columns))
        return (access.conform(b, target) for b in found.to_batches() if b.num_rows)

    def group_counts(self, uri: str, columns: Sequence[str], *, where_in: tuple[str, Any],
                     info: TableInfo | None = None) -> Any:
        import pyarrow as pa

        info = info or access.table_info(uri)
        keys = _keys(where_in)
        target = access.target_schema(uri, info, list(columns))
        empty = pa.table({**{c: pa.array([], target.field(c).type) for c in columns},
                          "count_all": pa.array([], pa.int64())})
        if not keys:
            return empty
        column = where_in[0]
        frame = self._matching(self._table(uri), column, keys, info.schema.field(column).type)
        grouped = frame.groupBy(*[frame[quote(c)] for c in columns]).count()
        found = self._arrow(grouped, "counting the requested rows", uri, keys)
        if not found.num_rows:
            return empty
        out = {c: found.column(i).cast(target.field(c).type) for i, c in enumerate(columns)}
        return pa.table({**out, "count_all": found.column(len(columns)).cast(pa.int64())})

    def count_rows(self, uri: str, version: int | None = None, *, where_in: tuple[str, Any] | None = None,
                   null_column: str | None = None) -> int:
        if self._old(uri, version) and (where_in is not None or null_column is not None):
            column = where_in[0] if where_in is not None else str(null_column)
            rows, non_null, hits = self.tally(uri, column, where_in[1] if where_in is not None else None,
                                              version=version)
            return hits if where_in is not None else rows - non_null
        if self._old(uri, version):
            info = access.table_info(uri, version)
            return self.tally(uri, info.schema.names[0], None, version=version)[0]
        frame = self._table(uri, version)
        keys: list[Any] = []
        if where_in is not None:
            keys = _keys(where_in)
            if not keys:
                return 0
            info = access.table_info(uri, version)
            frame = self._matching(frame, where_in[0], keys, info.schema.field(where_in[0]).type)
        elif null_column is not None:
            frame = frame.where(frame[quote(null_column)].isNull())
        found = self._arrow(frame.selectExpr("count(*) AS n"), "counting rows", uri, keys)
        return int(found.column(0)[0].as_py() or 0)

    def _tally(self, frame: Any, column: str, keys: list[Any], arrow_type: Any, what: str, uri: str
               ) -> tuple[int, int, int]:
        """One job over the whole column: (rows, non-NULL values, values among the keys), by a left join with the
        distinct keys' broadcast frame and one aggregate."""
        counted = [f"count({quote(column)}) AS nn"]
        if keys:
            wanted = self._key_frame(list(dict.fromkeys(keys)), arrow_type)
            frame = frame.join(wanted, frame[quote(column)] == wanted[_KEY], "left")
            counted.append(f"count({_KEY}) AS hits")
        found = self._arrow(frame.selectExpr("count(*) AS n", *counted), what, uri, keys)
        values = [int(found.column(i)[0].as_py() or 0) for i in range(found.num_columns)]
        return values[0], values[1], values[2] if keys else 0

    def tally(self, uri: str, column: str, keys: Any, *, version: int | None = None) -> tuple[int, int, int]:
        """One job at ``version`` by Spark's Delta reader; at an older version it cannot time-travel to, the
        files the log lists then (:meth:`_tally_from_files`)."""
        info = access.table_info(uri, version)
        wanted = _present(keys)
        try:
            return self._tally(self._table(uri, version), column, wanted, info.schema.field(column).type,
                               "counting rows", uri)
        except TableError:
            if not self._old(uri, version):
                raise
            assert version is not None
            return self._tally_from_files(uri, column, keys, version)

    def subject_pass(self, uri: str, column: str, keys: Any, *, version: int, info: TableInfo) -> SubjectPass:
        """One job over the whole column (its counts and how many values are among the keys); a second, a
        semi-join, fetches those values only when there are any (after an erasure: none)."""
        import pyarrow as pa

        frame = self._table(uri, version)
        ctype = info.schema.field(column).type
        wanted = _present(keys)
        rows, non_null, hits = self._tally(frame, column, wanted, ctype, "the full pass", uri)
        survivors = pa.table({column: pa.array([], ctype)})
        if hits:
            found = self._arrow(self._matching(frame, column, wanted, ctype).select(frame[quote(column)]),
                                "the full pass", uri, wanted)
            survivors = pa.table({column: found.column(0).cast(ctype)})
        return SubjectPass(rows, non_null, survivors)

    def file_pass(self, uri: str, paths: Sequence[str], physical: str, arrow_type: Any, keys: Any) -> FilePass:
        """The files read by Spark's plain Parquet reader, with an explicit one-column schema (a file without the
        column reads as NULLs, as Delta's schema evolution means): rows, non-NULL values, values among keys; one
        job."""
        import pyarrow as pa
        from pyspark.sql.pandas.types import from_arrow_schema

        if not paths:
            return FilePass(0, 0, 0, 0)
        base = self._path(uri)
        schema = from_arrow_schema(pa.schema([pa.field(physical, access.plain_type(arrow_type))]))
        frame = self.spark.read.schema(schema).parquet(*[file_location(base, p, self.server) for p in paths])
        wanted = _present(keys)
        rows, non_null, hits = self._tally(frame, physical, wanted, arrow_type, "reading the table's files", uri)
        return FilePass(len(paths), rows, non_null, hits)

    def near_counts(self, uri: str, column: str, wanted: Any, forms: Any, *,
                    steps: Sequence[str] = ()) -> dict[str, int]:
        """Normalised on the cluster (a Python function over Arrow batches, carrying no subject id: the near form,
        and with ``steps`` the kind's canonical form), joined with a frame of the wanted forms, less the rows
        equal to a wanted id as they are (or in canonical form); counted per form."""
        import functools

        import pyarrow as pa

        name = f"__dsr_near_{uuid.uuid4().hex[:8]}"
        frame = self._table(uri).selectExpr(f"CAST({quote(column)} AS STRING) AS v")
        try:  # mapInArrow has the plan analysed at once (on Spark Connect): a failure comes here, not in the job
            normalised = frame.mapInArrow(functools.partial(_with_near_forms, tuple(steps)),
                                          f"v STRING, {_FORM} STRING")
        except Exception as exc:
            raise error_for(f"the near-match scan of {uri} on the cluster", exc,
                            [*wanted.to_pylist(), *forms.to_pylist()]) from None
        form_frame = key_frame(self.spark, pa.table({_KEY: forms.cast(pa.string())}))
        exact = key_frame(self.spark, pa.table({name: wanted.cast(pa.string())}))
        near = normalised.join(form_frame, normalised[_FORM] == form_frame[_KEY], "left_semi")
        near = near.join(exact, near["v"] == exact[name], "left_anti")
        found = self._arrow(near.groupBy(_FORM).count(), "the near-match scan", uri,
                            [*wanted.to_pylist(), *forms.to_pylist()])
        return {str(f): int(n) for f, n in zip(found.column(0).to_pylist(), found.column(1).to_pylist(),
                                               strict=True)}

    def variants(self, uri: str, column: str, steps: Sequence[str], forms: Sequence[str], *,
                 version: int | None = None, info: TableInfo | None = None) -> dict[Any, str]:
        """Normalised on the cluster by the same function as in this process (``mapInArrow``: the Python
        workers' pyarrow, the closure carrying only the steps), joined with a frame of the wanted forms; the
        distinct (value, form) pairs come back."""
        import functools

        import pyarrow as pa

        frame = self._table(uri, version).selectExpr(f"CAST({quote(column)} AS STRING) AS v").distinct()
        try:
            normalised = frame.mapInArrow(functools.partial(_canonical, tuple(steps)), f"v STRING, {_FORM} STRING")
        except Exception as exc:
            raise error_for(f"the identifier scan of {uri} on the cluster", exc, list(forms)) from None
        wanted = key_frame(self.spark, pa.table({_KEY: pa.array(list(forms), pa.string())}))
        hit = normalised.join(wanted, normalised[_FORM] == wanted[_KEY], "left_semi")
        found = self._arrow(hit, "the identifier scan", uri, list(forms))
        return dict(zip(found.column(0).to_pylist(), found.column(1).to_pylist(), strict=True))

    def reproduces(self, steps: Sequence[str]) -> str | None:
        """The probe strings normalised on the cluster (its Python workers' pyarrow) against this process's
        result: a cluster whose Unicode tables differ would match other texts than the request's. Asked once
        per set of steps."""
        import functools

        import pyarrow as pa

        from dsr.engines.reading import PROBES, canonical_text

        key = tuple(steps)
        if key not in self._reproduces:
            here = canonical_text(pa.array(list(PROBES), pa.string()), key).to_pylist()
            frame = self.spark.createDataFrame([(p,) for p in PROBES], "v STRING")
            try:
                got = self._arrow(frame.mapInArrow(functools.partial(_canonical, key), f"v STRING, {_FORM} STRING"),
                                  "the normalisation probe", "(probe strings)")
                there = dict(zip(got.column(0).to_pylist(), got.column(1).to_pylist(), strict=True))
                differ = [i for i, p in enumerate(PROBES) if there.get(p) != here[i]]
                self._reproduces[key] = None if not differ else (
                    f"the cluster's normalisation ({', '.join(key)}) differs from this process's on "
                    f"{len(differ)} of {len(PROBES)} probe strings (its pyarrow's Unicode tables differ): the "
                    "kind's identifiers could match other texts there")
            except TableError as exc:
                self._reproduces[key] = f"the cluster cannot run the normalisation ({exc})"
        return self._reproduces[key]

    def linked(self, uri: str, columns: Mapping[str, Sequence[str]], wanted: Mapping[str, Sequence[str]]) -> Any:
        """The link table's columns as canonical text on the cluster (``mapInArrow``), each column's wanted
        values a broadcast frame it is semi-joined with; the union of the matches comes back."""
        import functools

        import pyarrow as pa

        names = list(columns)
        shown = ", ".join(f"CAST({quote(n)} AS STRING) AS {quote(n)}" for n in names)
        frame = self._table(uri).selectExpr(*shown.split(", "))
        ddl = ", ".join(f"{quote(n)} STRING" for n in names)
        values = [v for vs in wanted.values() for v in vs]
        try:
            canon = frame.mapInArrow(functools.partial(_canonical_all, tuple((n, tuple(st)) for n, st in
                                                                                columns.items())), ddl)
        except Exception as exc:
            raise error_for(f"the link scan of {uri} on the cluster", exc, values) from None
        parts = []
        for n, vs in wanted.items():
            if vs:
                keys = key_frame(self.spark, pa.table({_KEY: pa.array(list(vs), pa.string())}))
                parts.append(canon.join(keys, canon[n] == keys[_KEY], "left_semi"))
        if not parts:
            return pa.table({n: pa.array([], pa.string()) for n in names})
        found = self._arrow(reduce(lambda a, b: a.unionByName(b), parts).distinct(), "the link scan", uri, values)
        return pa.table({n: found.column(n).cast(pa.string()) for n in names})

    def key_rows(self, uri: str, files: Mapping[str, Sequence[str]], names: Collection[str],
                 keys: Any, *, steps: Sequence[str] = ()) -> dict[Any, Counter[str]]:
        """One Spark job over the files: each group read by the plain Parquet reader with an explicit schema (a
        column of each name, of the keys' type: a file without one reads as NULLs) beside a literal group index,
        the union joined with a broadcast frame of the keys, counted per key and group. When the files do not
        agree on the column's type (the reader merges their schemas, and fails), each file's schema is asked for
        (the cluster reads the footers), the files are grouped by it, and the column is compared as text
        (``CAST(... AS STRING)``, as the in-process scan compares). With ``steps`` (a kind that normalises), the
        values are replaced by their canonical text on the cluster (``mapInArrow``, the closure carrying only the
        steps) before the join with the keys (canonical forms). Files Spark skips by name
        (:func:`skipped_by_name`) are read in this process."""
        import pyarrow as pa

        from dsr.delta import physical
        from dsr.engines.reading import folder

        wanted = _present(keys)
        columns = sorted(set(names))
        found: dict[Any, Counter[str]] = {}
        if not wanted or not columns:
            return found
        hidden = {g: [f for f in fs if skipped_by_name(f)] for g, fs in files.items()}
        if any(hidden.values()):
            found = physical.rows_in_files(uri, hidden, columns, wanted, folder(steps))
        base = self._path(uri).rstrip("/")
        located = {g: [literal_location(f"{base}/{f}", self.server) for f in fs if not skipped_by_name(f)]
                   for g, fs in files.items()}
        located = {g: fs for g, fs in located.items() if fs}
        if not located:
            return found
        by_text = {_text(k): k for k in wanted}
        try:
            groups, frame = self._typed_values(located, columns, keys.type)
            self.jobs += 1
            counts = self._counted(self._folded(frame, steps), self._key_frame(wanted, keys.type)).toArrow()
        except Exception:  # the files disagree on the column's type: grouped by their own schemas, as text
            groups, frame = self._text_values(uri, located, columns, wanted)
            if frame is None:  # no file has the column
                return found
            counts = self._arrow(self._counted(self._folded(frame, steps),
                                               self._key_frame(list(by_text), pa.string())),
                                 "the residue scan of the table's files", uri, wanted)
        for k, i, n in zip(*(counts.column(c).to_pylist() for c in range(3)), strict=True):
            found.setdefault(by_text[_text(k)], Counter())[groups[i]] += int(n)
        return found

    def _folded(self, frame: Any, steps: Sequence[str]) -> Any:
        """A (group index, value) frame with each value replaced by its canonical text (none: as it is)."""
        import functools

        if not steps:
            return frame
        return frame.mapInArrow(functools.partial(_canonical_values, tuple(steps)), f"{_GROUP} INT, {_VALUE} STRING")

    def _typed_values(self, located: Mapping[str, Sequence[str]], columns: Sequence[str],
                      arrow_type: Any) -> tuple[list[str], Any]:
        """The groups, and a frame of (group index, value) over every file and column name, read as the keys'
        type."""
        import pyarrow as pa
        from pyspark.sql.pandas.types import from_arrow_schema

        schema = from_arrow_schema(pa.schema([pa.field(c, access.plain_type(arrow_type)) for c in columns]))
        parts = []
        for i, locations in enumerate(located.values()):
            frame = self.spark.read.schema(schema).parquet(*locations)
            parts += [frame.selectExpr(f"{i} AS {_GROUP}", f"{quote(c)} AS {_VALUE}") for c in columns]
        return list(located), reduce(lambda a, b: a.unionAll(b), parts)

    def _text_values(self, uri: str, located: Mapping[str, Sequence[str]], columns: Sequence[str],
                     wanted: Sequence[Any]) -> tuple[list[str], Any | None]:
        """As :meth:`_typed_values`, the files grouped by their own schema (the reader merges the schemas of the
        files it reads together, and fails on any column whose type differs), the values cast to text (a nested
        column cannot hold a key: left out); no frame when no file has a column of ``columns``."""
        from pyspark.sql.types import ArrayType, MapType, StructField, StructType

        kinds: dict[tuple[str, str], tuple[list[Any], list[str]]] = {}
        for g, locations in located.items():
            for location in locations:
                try:
                    schema = self.spark.read.parquet(location).schema
                except Exception as exc:
                    raise error_for(f"reading the schema of a file of {uri} on the cluster", exc, wanted) from None
                fields = {f.name: f for f in schema.fields}
                mine = [fields[c] for c in columns
                        if c in fields and not isinstance(fields[c].dataType, ArrayType | MapType | StructType)]
                kinds.setdefault((g, schema.simpleString()), (mine, []))[1].append(location)
        groups: list[str] = []
        parts = []
        for (g, _), (mine, locations) in kinds.items():
            if not mine:  # these files have no such column: no key there
                continue
            frame = self.spark.read.schema(StructType([StructField(f.name, f.dataType, True) for f in mine])) \
                .parquet(*locations)
            parts += [frame.selectExpr(f"{len(groups)} AS {_GROUP}", f"CAST({quote(f.name)} AS STRING) AS {_VALUE}")
                      for f in mine]
            groups.append(g)
        return groups, reduce(lambda a, b: a.unionAll(b), parts) if parts else None

    def _counted(self, values: Any, wanted: Any) -> Any:
        """(key, group index, rows): the (group, value) frame joined with a key frame, counted."""
        joined = values.join(wanted, values[_VALUE] == wanted[_KEY], "inner")
        return joined.groupBy(_KEY, _GROUP).count()


def with_forms(frame: Any, steps: Sequence[str]) -> Any:
    """A frame of values ``v`` as (``v``, ``f``): ``f`` the value's canonical text under an identifier kind's
    normalisation ``steps``, computed on the cluster by the one implementation (``mapInArrow``, the closure
    carrying only the steps); without steps, ``f`` is ``v``."""
    import functools

    if not steps:
        return frame.selectExpr("v", "v AS f")
    text = frame.selectExpr("CAST(v AS STRING) AS v")
    return text.mapInArrow(functools.partial(_canonical, tuple(steps)), f"v STRING, {_FORM} STRING") \
        .withColumnRenamed(_FORM, "f")


def _with_near_forms(steps: tuple[str, ...], batches: Iterator[Any]) -> Iterator[Any]:
    """Runs on the cluster: each batch of ``v`` (as it is, or in canonical form under an identifier kind's
    ``steps``) with its near form (NFKC, lower case, trimmed) beside it."""
    import pyarrow as pa

    from dsr.engines.reading import canonical_text, normalise

    for batch in batches:
        values = batch.column(0)
        yield pa.RecordBatch.from_arrays([canonical_text(values, steps) if steps else values, normalise(values)],
                                         names=["v", _FORM])


def _canonical(steps: tuple[str, ...], batches: Iterator[Any]) -> Iterator[Any]:
    """Runs on the cluster: each batch of ``v`` with its canonical form (the identifier kind's steps) beside it."""
    import pyarrow as pa

    from dsr.engines.reading import canonical_text

    for batch in batches:
        values = batch.column(0)
        yield pa.RecordBatch.from_arrays([values, canonical_text(values, steps)], names=["v", _FORM])


def _canonical_values(steps: tuple[str, ...], batches: Iterator[Any]) -> Iterator[Any]:
    """Runs on the cluster: each batch of (group index, value) with the value as its canonical text."""
    import pyarrow as pa

    from dsr.engines.reading import canonical_text

    for batch in batches:
        yield pa.RecordBatch.from_arrays([batch.column(0).cast(pa.int32()), canonical_text(batch.column(1), steps)],
                                         names=[_GROUP, _VALUE])


def _canonical_all(columns: tuple[tuple[str, tuple[str, ...]], ...], batches: Iterator[Any]) -> Iterator[Any]:
    """Runs on the cluster: every column of each batch as canonical text (its kind's steps)."""
    import pyarrow as pa

    from dsr.engines.reading import canonical_text

    for batch in batches:
        yield pa.RecordBatch.from_arrays([canonical_text(batch.column(n), st) for n, st in columns],
                                         names=[n for n, _ in columns])
