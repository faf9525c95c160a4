"""Export part files: one :class:`PartWriter` per table spills the batch's rows, sorted by request id, into a
few numbered chunk files, merged as they accumulate; its manifest, written last, makes them count."""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dsr.exports.store import (
    MANIFEST,
    ROW_OVERHEAD,
    SORT_KEY,
    Output,
    Store,
    check_id,
    dumps,
    entries,
    json_value,
    table_folder,
)

BUFFER_BYTES = 8 << 20  # rows a PartWriter keeps in memory before it spills a sorted chunk
FAN_IN = 16  # chunks merged at once (a merge holds FAN_IN + 1 files open)

# --- writing parts ------------------------------------------------------------------------------------------


class PartWriter:
    """Writes one table's rows for a batch of export requests: sorted chunk files, then one part + manifest.

    ``rows`` maps every request id to the number of rows written for it. Used as a context manager the parts
    are committed (merged, manifest written) on a clean exit and removed when the block raises.
    """

    def __init__(
        self, exports: str, run_id: str, table: str, request_ids: Iterable[str],
        *, buffer_bytes: int = BUFFER_BYTES, fan_in: int = FAN_IN, columns: Sequence[str] | None = None,
    ) -> None:
        if buffer_bytes < 1 or fan_in < 2:
            raise ValueError("buffer_bytes must be >= 1 and fan_in >= 2")
        check_id(run_id, "run id")
        self.table = table
        self.columns = list(columns) if columns is not None else None  # the CSV header of a package
        self.rows: dict[str, int] = {}
        self._keys: dict[str, bytes] = {}
        for rid in request_ids:
            self._keys[rid] = check_id(rid, "request id").encode("ascii") + b"\t"
            self.rows[rid] = 0
        self._buffer_bytes = buffer_bytes
        self._fan_in = fan_in
        self._store = Store(exports)
        self._dir = self._store.path("_parts", run_id, table_folder(table))
        self._buf: list[tuple[bytes, bytes]] = []
        self._buf_size = 0
        self._chunks: list[tuple[int, str]] = []  # (level, file name), oldest first; levels never increase
        self._counter = 0
        self._closed = False
        self._store.delete_tree(self._dir)  # what an earlier attempt at this table in this run left
        self._store.makedirs(self._dir)

    def write(self, request_id: str, row: Mapping[str, Any]) -> None:
        self.write_json(request_id, {k: json_value(v) for k, v in row.items()})

    def write_json(self, request_id: str, row: Mapping[str, Any]) -> None:
        """Write a row whose values are JSON-ready already (:func:`~dsr.exports.store.json_columns`)."""
        if self._closed:
            raise ValueError("the part writer is closed")
        prefix = self._keys[request_id]
        line = prefix + dumps(row).encode("utf-8")
        self._buf.append((prefix[:-1], line))
        self._buf_size += len(line) + ROW_OVERHEAD
        self.rows[request_id] += 1
        if self._buf_size >= self._buffer_bytes:
            self._spill()

    def close(self) -> None:
        """Merge what is left into one sorted part and write the manifest: from then on the parts count."""
        if self._closed:
            return
        if self._buf:
            self._spill(compact=False)
        while len(self._chunks) > 1:
            group = self._chunks[-self._fan_in:]
            merged = self._merge([name for _, name in group])
            self._chunks[-len(group):] = [(group[0][0] + 1, merged)]
        manifest = {"format": 1, "table": self.table, "parts": [name for _, name in self._chunks],
                    "rows": self.rows, **({"columns": self.columns} if self.columns is not None else {})}
        self._store.write_atomic(f"{self._dir}/{MANIFEST}", dumps(manifest).encode("utf-8"))
        self._closed = True

    def abort(self) -> None:
        """Forget the buffered rows and remove this table's parts (best effort)."""
        self._closed = True
        self._buf = []
        with contextlib.suppress(OSError):
            self._store.delete_tree(self._dir)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:
            self.abort()
            raise

    def _spill(self, *, compact: bool = True) -> None:
        self._buf.sort(key=SORT_KEY)  # stable: a request's rows keep their order
        name = self._write_chunk(self._buf)
        self._buf = []
        self._buf_size = 0
        self._chunks.append((0, name))
        while compact and len(self._chunks) >= self._fan_in:
            group = self._chunks[-self._fan_in:]
            if group[0][0] != group[-1][0]:
                break
            merged = self._merge([name for _, name in group])
            self._chunks[-self._fan_in:] = [(group[0][0] + 1, merged)]

    def _write_chunk(self, entries: Iterable[tuple[bytes, bytes]]) -> str:
        name = f"{self._counter:06d}.jsonl"
        self._counter += 1
        with self._store.open_write(f"{self._dir}/{name}") as f:
            out = Output(f)
            for _, line in entries:
                out.write(line + b"\n")
            out.flush()
        return name

    def _merge(self, names: Sequence[str]) -> str:
        """Merge chunks that are consecutive in time, oldest first (heapq.merge is stable across its inputs)."""
        sources = [entries(self._store, f"{self._dir}/{n}") for n in names]
        try:
            merged = self._write_chunk(heapq.merge(*sources, key=SORT_KEY))
        finally:
            for s in sources:
                s.close()
        for n in names:
            self._store.delete_file(f"{self._dir}/{n}")
        return merged


