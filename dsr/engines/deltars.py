"""The default engine: delta-rs (``deltalake``) + pyarrow, in-process.

Scans push the subject filter down to partition values and Parquet row-group statistics. Erasure is one
MERGE per table with the subjects as a pyarrow source (``streamed_exec=True``: delta-rs' eager mode would
write the source's key range, i.e. subject ids, into the commit's predicate). MERGE rewrites only the files
that hold matched rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from dsr.engines import deltalog
from dsr.engines.base import KEY_COLUMN, CommitResult, ErasePlan

__all__ = ["DeltaRsEngine"]


def _isin(dataset: Any, column: str, keys: Any) -> Any:
    """``column IN keys`` as a dataset filter.

    The comparison goes through an explicit cast to the dataset's type: files rewritten by delta-rs MERGE
    store text as string_view while the table schema says string, and pyarrow's statistics pruning cannot
    compare the two. The cast keeps partition pruning and row filtering correct on both kinds of file.
    """
    import pyarrow.dataset as ds

    arrow_type = dataset.schema.field(column).type
    return ds.field(column).cast(arrow_type).isin(keys.cast(arrow_type))


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DeltaRsEngine(deltalog.LogMetadata):
    name = "delta-rs"
    dialect = "datafusion"
    frame_kind = "pandas"

    def __init__(self) -> None:
        self.scans: Counter[str] = Counter()

    # --- metadata (schema and version: deltalog.LogMetadata) --------------------------------------------

    def row_count(self, uri: str, version: int | None = None) -> int:
        return int(self._dataset(deltalog.open_delta(uri, version)).count_rows())

    def history(self, uri: str, limit: int = 20) -> list[dict[str, Any]]:
        return list(deltalog.open_delta(uri).history(limit))

    # --- reads ------------------------------------------------------------------------------------------

    def _dataset(self, dt: Any) -> Any:
        from dsr.deltautil import pyarrow_dataset

        try:
            return pyarrow_dataset(dt)
        except Exception as exc:  # deletion vectors, unsupported reader features
            raise RuntimeError(
                f"delta-rs cannot read this table as a pyarrow dataset ({type(exc).__name__}); "
                "tables with deletion vectors need the spark engine"
            ) from None

    def scan_subjects(
        self, uri: str, column: str, keys: Any, columns: Sequence[str] | None = None
    ) -> Iterator[Any]:

        dataset = self._dataset(deltalog.open_delta(uri))
        self.scans[uri] += 1
        if len(keys) == 0:
            return
        scanner = dataset.scanner(
            columns=list(columns) if columns is not None else None,
            filter=_isin(dataset, column, keys),
        )
        for batch in scanner.to_batches():
            if batch.num_rows:
                yield batch

    def validation_frames(
        self, uri: str, columns: Sequence[str], *, version: int | None = None,
        where_in: tuple[str, Any] | None = None, batch_rows: int = 1_000_000,
    ) -> Iterator[Any]:
        import pyarrow as pa

        dataset = self._dataset(deltalog.open_delta(uri, version))
        self.scans[uri] += 1
        flt = _isin(dataset, *where_in) if where_in is not None else None
        pending: list[Any] = []
        size = 0
        schema = pa.schema([dataset.schema.field(c) for c in columns])
        scanner = dataset.scanner(columns=list(columns), filter=flt, batch_size=min(batch_rows, 131_072))
        yielded = False
        for batch in scanner.to_batches():
            if not batch.num_rows:
                continue
            pending.append(batch)
            size += batch.num_rows
            if size >= batch_rows:
                yield pa.Table.from_batches(pending, schema=schema).to_pandas()
                pending, size, yielded = [], 0, True
        if pending or not yielded:  # at least one frame, possibly empty
            yield pa.Table.from_batches(pending, schema=schema).to_pandas()

    # --- the erase commit -------------------------------------------------------------------------------

    def erase(self, plan: ErasePlan, source: Any) -> CommitResult:
        from deltalake import CommitProperties

        dt = deltalog.open_delta(plan.uri)
        before = int(dt.version())
        merger = dt.merge(
            source,
            predicate=f"t.{_q(plan.subject)} = s.{_q(KEY_COLUMN)}",
            source_alias="s",
            target_alias="t",
            streamed_exec=True,
            commit_properties=CommitProperties(custom_metadata=dict(plan.metadata) or None),
        )
        if plan.strategy == "delete":
            merger = merger.when_matched_delete()
        elif plan.strategy == "anonymise":
            merger = merger.when_matched_update(updates={_q(c): e for c, e in plan.updates.items()})
        else:
            raise ValueError(f"engine erase cannot do {plan.strategy!r}")
        m = merger.execute()
        after = int(dt.version())
        return CommitResult(
            version_before=after - 1 if after != before else before,
            version_after=after,
            rows_deleted=int(m.get("num_target_rows_deleted", 0)),
            rows_updated=int(m.get("num_target_rows_updated", 0)),
            rows_copied=int(m.get("num_target_rows_copied", 0)),
            files_added=int(m.get("num_target_files_added", 0)),
            files_removed=int(m.get("num_target_files_removed", 0)),
        )

    def close(self) -> None:
        return None
