"""The Reader Protocol: the heavy reads of data tables, run where the engine runs.

Each engine carries a ``reader``. The steps ask it for results the size of the requests — the rows of the
requested people, counts, the erased keys still present — never for a table's contents:

- :class:`LocalReader` (the delta-rs engine's): the one access layer (:mod:`dsr.delta.access`), in this process;
- :class:`dsr.engines.spark_reads.SparkReader` (the Spark engine's): Spark jobs on the cluster; only their
  results come back to this process.

Whatever the reader, the Delta *log* is read here by the access layer (versions, schemas, live files, file
statistics, deletion vectors), and verification on a cluster reader keeps evidence of its own
(:mod:`dsr.verify.evidence`): the cluster's plain Parquet reads of the very files delta-rs' log replay lists,
and the files the erase commit added read in this process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from dsr.delta import access
from dsr.delta.plainfiles import FilePass
from dsr.delta.tableinfo import TableInfo

__all__ = ["LOCAL", "PROBES", "FilePass", "LocalReader", "Reader", "SubjectPass", "canonical_text", "folder",
           "normalise", "normalise_array", "survivors_of"]


PROBES = (
    "ÉMILE@Example.org", "  jane@example.org\t", "ǅungla", "İstanbul", "ΟΔΟΣ", "Straße", "ｆｕｌｌ　ｗｉｄｔｈ",
    "ﬁle", "Ⅻ", "K", "Å", "\u00a0nbsp\u2003", "ŉ", "ꭰ", "𐐀",
)
"""Strings whose normalisation differs between Unicode implementations (title case, dotted I, final sigma,
sharp s, full width, ligatures, Roman numerals, Kelvin and Angstrom signs, odd white space, Cherokee, Deseret)."""


@dataclass(frozen=True)
class SubjectPass:
    """One full pass of a subject column at one version: rows read, non-NULL values read, and a one-column
    pyarrow Table of the values that are among the keys (every survivor of an erasure; none when all is well)."""

    rows: int
    non_null: int
    survivors: Any


@runtime_checkable
class Reader(Protocol):
    where: str
    """'in this process' or 'on the cluster': where the data is read (said in verification's notes)."""

    def scan(self, uri: str, columns: Sequence[str], *, where_in: tuple[str, Any], version: int | None = None,
             info: TableInfo | None = None) -> Iterator[Any]:
        """Record batches (logical names, plain arrow types) of the rows whose column is one of the keys."""
        ...

    def group_counts(self, uri: str, columns: Sequence[str], *, where_in: tuple[str, Any],
                     info: TableInfo | None = None) -> Any:
        """A pyarrow Table: ``columns`` and ``count_all``, the rows per distinct value of ``columns`` among the
        rows whose column is one of the keys."""
        ...

    def count_rows(self, uri: str, version: int | None = None, *, where_in: tuple[str, Any] | None = None,
                   null_column: str | None = None) -> int:
        """Rows at ``version``; only those whose column is one of the keys, or whose ``null_column`` is NULL."""
        ...

    def subject_pass(self, uri: str, column: str, keys: Any, *, version: int, info: TableInfo) -> SubjectPass:
        """One read of the whole ``column`` at ``version``: counts, and the values among ``keys`` (or none)."""
        ...

    def tally(self, uri: str, column: str, keys: Any, *, version: int | None = None) -> tuple[int, int, int]:
        """(rows, non-NULL values of ``column``, rows whose ``column`` is one of ``keys``) at ``version``."""
        ...

    def file_pass(self, uri: str, paths: Sequence[str], physical: str, arrow_type: Any, keys: Any) -> FilePass:
        """``paths`` (below the table, as the log writes them) read as plain Parquet (no Delta reader, no deletion
        vector applied), column ``physical``."""
        ...

    def variants(self, uri: str, column: str, steps: Sequence[str], forms: Sequence[str], *,
                 version: int | None = None, info: TableInfo | None = None) -> dict[Any, str]:
        """The distinct values of ``column`` (at ``version``) whose normalised form
        (:func:`normalise_array` with ``steps``) is one of ``forms``: value -> form."""
        ...

    def reproduces(self, steps: Sequence[str]) -> str | None:
        """Why this reader's normalisation with ``steps`` differs from this process's on the probe strings
        (:data:`dsr.core.identifiers.PROBES`), or None when it gives the same text for every one."""
        ...

    def linked(self, uri: str, columns: Mapping[str, Sequence[str]], wanted: Mapping[str, Sequence[str]]) -> Any:
        """A link table's rows where some column's canonical text (cast to text, normalised with its steps:
        ``columns``: column -> steps) is one of ``wanted[column]``: a pyarrow Table of every column of
        ``columns``, canonical text."""
        ...

    def near_counts(self, uri: str, column: str, wanted: Any, forms: Any, *,
                    steps: Sequence[str] = ()) -> dict[str, int]:
        """Per normalised form (NFKC, lower case, trimmed): rows of the text ``column`` equal to one of
        ``forms`` after normalisation but to none of ``wanted`` as they are, or, with ``steps`` (the column's
        identifier kind normalises), in their canonical form under those steps."""
        ...

    def key_rows(self, uri: str, files: Mapping[str, Sequence[str]], names: Collection[str],
                 keys: Any, *, steps: Sequence[str] = ()) -> dict[Any, Counter[str]]:
        """The residue scan's rows: key -> group -> rows holding it, among parquet files read as plain Parquet
        (every row: a deletion vector masks none). ``files``: group (a place: data files, change data) -> paths
        below the table, as on disk, referenced by the log or not; ``names``: the column's names on disk (logical
        and physical); ``keys``: a pyarrow Array. A file without such a column holds no key; one with it under
        another type is compared as text (:mod:`dsr.delta.physical`). ``steps``: the column's identifier kind
        normalises: each value's canonical text (:func:`canonical_text`) is compared with the keys (canonical
        forms)."""
        ...


def normalise(values: Any) -> Any:
    """A pyarrow string array in the near-match comparison form: NFKC, lower case, no surrounding white space."""
    import pyarrow.compute as pc

    return pc.utf8_trim_whitespace(pc.utf8_lower(pc.utf8_normalize(values, "NFKC")))


def normalise_array(values: Any, steps: Sequence[str]) -> Any:
    """A pyarrow string array with the normalisation steps applied in order (the one implementation)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not steps:
        return values
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    for step in steps:
        if step == "trim":
            values = pc.utf8_trim_whitespace(values)
        elif step == "lower":
            values = pc.utf8_lower(values)
        elif step == "nfkc":
            values = pc.utf8_normalize(values, "NFKC")
        else:
            raise ValueError(f"unknown normalisation {step!r}")
    return values


def canonical_text(values: Any, steps: Sequence[str]) -> Any:
    """A column's values as canonical identifier text: cast to text (an integer as its digits, binary as UTF-8),
    then normalised with ``steps`` (:func:`normalise_array`, the one implementation)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    return normalise_array(values, steps)


def folder(steps: Sequence[str]) -> Callable[[Any], Any] | None:
    """The fold of a column whose identifier kind normalises with ``steps`` (values -> canonical text, for
    :mod:`dsr.delta.physical`); None for a kind that does not."""
    import functools

    return functools.partial(canonical_text, steps=tuple(steps)) if steps else None


def variants_in(values: Any, steps: Sequence[str], wanted: Any) -> dict[Any, str]:
    """raw value -> form, for the values of an Arrow array whose canonical text is in ``wanted``."""
    import pyarrow.compute as pc

    forms = canonical_text(values, steps)
    hit = pc.fill_null(pc.is_in(forms, value_set=wanted), False)
    if not pc.any(hit).as_py():
        return {}
    raw, form = pc.filter(values, hit).to_pylist(), pc.filter(forms, hit).to_pylist()
    return dict(zip(raw, form, strict=True))


def linked_in(batch: Any, columns: Mapping[str, Sequence[str]], wanted: Mapping[str, Sequence[str]]) -> Any:
    """The rows of a record batch where some column's canonical text is wanted, every column as canonical text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = {n: canonical_text(batch.column(n), steps) for n, steps in columns.items()}
    hit = None
    for n, values in wanted.items():
        if values:
            h = pc.fill_null(pc.is_in(texts[n], value_set=pa.array(list(values), pa.string())), False)
            hit = h if hit is None else pc.or_(hit, h)
    table = pa.record_batch(list(texts.values()), names=list(texts))
    return table.filter(hit) if hit is not None else table.slice(0, 0)


def survivors_of(column: Any, keys: Any) -> Any:
    """The values of a pyarrow column that are among ``keys`` (a pyarrow Array), as a list of chunks."""
    import pyarrow.compute as pc

    if keys is None or len(column) == column.null_count:
        return []
    hits = pc.filter(column, pc.is_in(column, value_set=keys))
    return hits.chunks if hasattr(hits, "chunks") else [hits]


class LocalReader:
    """The in-process reader of the delta-rs engine: the access layer's DataFusion scans."""

    where = "in this process"

    def scan(self, uri: str, columns: Sequence[str], *, where_in: tuple[str, Any], version: int | None = None,
             info: TableInfo | None = None) -> Iterator[Any]:
        return access.scan(uri, columns, where_in=where_in, version=version, info=info)

    def group_counts(self, uri: str, columns: Sequence[str], *, where_in: tuple[str, Any],
                     info: TableInfo | None = None) -> Any:
        import pyarrow as pa

        info = info or access.table_info(uri)
        found = list(access.scan(uri, list(columns), where_in=where_in, info=info))
        if not found:
            return pa.table({**{c: pa.array([], info.schema.field(c).type) for c in columns},
                             "count_all": pa.array([], pa.int64())})
        # counted per group in Arrow, once over the rows found
        return pa.Table.from_batches(found).group_by(list(columns), use_threads=False).aggregate([([], "count_all")])

    def count_rows(self, uri: str, version: int | None = None, *, where_in: tuple[str, Any] | None = None,
                   null_column: str | None = None) -> int:
        return access.count_rows(uri, version, where_in=where_in, null_column=null_column)

    def tally(self, uri: str, column: str, keys: Any, *, version: int | None = None) -> tuple[int, int, int]:
        """Three counting queries of the DataFusion reader (partition and statistics pruning where they can)."""
        rows = access.count_rows(uri, version)
        nulls = access.count_rows(uri, version, null_column=column)
        keyed = access.count_rows(uri, version, where_in=(column, keys)) if keys is not None and len(keys) else 0
        return rows, rows - nulls, keyed

    def subject_pass(self, uri: str, column: str, keys: Any, *, version: int, info: TableInfo) -> SubjectPass:
        """One projected read of the whole column, batch by batch, compared with the keys in Arrow (``is_in``,
        vectorised): GE validates the small table of survivors, not millions of rows in pandas."""
        import pyarrow as pa

        rows = non_null = 0
        found: list[Any] = []
        for chunk in access.chunked(access.scan(uri, [column], version=version, info=info)):
            values = chunk.column(0)
            rows += len(values)
            non_null += len(values) - values.null_count
            found.extend(survivors_of(values, keys))
        field = info.schema.field(column)
        return SubjectPass(rows, non_null, pa.table({column: pa.concat_arrays(found) if found
                                                     else pa.array([], field.type)}))

    def file_pass(self, uri: str, paths: Sequence[str], physical: str, arrow_type: Any, keys: Any) -> FilePass:
        from dsr.delta.plainfiles import file_pass

        return file_pass(uri, paths, physical, arrow_type, keys)

    def variants(self, uri: str, column: str, steps: Sequence[str], forms: Sequence[str], *,
                 version: int | None = None, info: TableInfo | None = None) -> dict[Any, str]:
        import pyarrow as pa

        wanted = pa.array(sorted(set(forms)), pa.string())
        out: dict[Any, str] = {}
        for batch in access.scan(uri, [column], version=version, info=info):
            out.update(variants_in(batch.column(0), steps, wanted))
        return out

    def reproduces(self, steps: Sequence[str]) -> str | None:
        return None  # the same function, in this process

    def linked(self, uri: str, columns: Mapping[str, Sequence[str]], wanted: Mapping[str, Sequence[str]]) -> Any:
        import pyarrow as pa

        names = list(columns)
        found = [linked_in(batch, columns, wanted) for batch in access.scan(uri, names)]
        return pa.Table.from_batches([b for b in found if b.num_rows]) if any(b.num_rows for b in found) else \
            pa.table({n: pa.array([], pa.string()) for n in names})

    def near_counts(self, uri: str, column: str, wanted: Any, forms: Any, *,
                    steps: Sequence[str] = ()) -> dict[str, int]:
        import pyarrow.compute as pc

        counts: Counter[str] = Counter()
        for batch in access.scan(uri, [column]):
            values = batch.column(0)
            hit = pc.is_in(normalise(values), value_set=forms)
            exact = pc.is_in(canonical_text(values, steps) if steps else values, value_set=wanted)
            near = pc.and_(pc.fill_null(hit, False), pc.invert(pc.fill_null(exact, False)))
            if pc.any(near).as_py():
                counts.update(normalise(pc.filter(values, near)).to_pylist())
        return dict(counts)

    def key_rows(self, uri: str, files: Mapping[str, Sequence[str]], names: Collection[str],
                 keys: Any, *, steps: Sequence[str] = ()) -> dict[Any, Counter[str]]:
        from dsr.delta import physical

        return physical.rows_in_files(uri, files, names, keys.to_pylist(), folder(steps))


LOCAL = LocalReader()
"""The in-process reader (the delta-rs engine's, and any command's that has no engine)."""
