"""The default engine: delta-rs (``deltalake``), in-process.

Erasure is one MERGE per table with the subjects as a pyarrow source (``streamed_exec=True``: delta-rs' eager
mode would write the source's key range, i.e. subject ids, into the commit's predicate). MERGE rewrites only
the files that hold matched rows; on tables with deletion vectors it rewrites those files too (delta-rs
writes no deletion vectors), so erased rows are gone from the live files.
"""

from __future__ import annotations

from typing import Any

from dsr.delta import access, commits
from dsr.delta.support import DELETE, DELTA_RS, UPDATE, Support
from dsr.engines.base import KEY_COLUMN, CommitResult, ErasePlan, Search
from dsr.engines.matching import Matches, datafusion_matches
from dsr.engines.pruning import partition_predicate
from dsr.engines.reading import LOCAL, Reader
from dsr.errors import TableError

__all__ = ["DeltaRsEngine"]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DeltaRsEngine:
    name = "delta-rs"
    dialect = "datafusion"
    support: Support = DELTA_RS
    reader: Reader = LOCAL

    def history(self, uri: str, limit: int = 20) -> list[dict[str, Any]]:
        return commits.history(uri, limit)

    def find_suppressed(self, uri: str, search: Search) -> Matches:
        return datafusion_matches(uri, search.files, search.physical, search.column, search.arrow_type,
                                  search.digests, search.secret, search.steps)

    def erase(self, plan: ErasePlan, source: Any) -> CommitResult:
        from deltalake import CommitProperties

        dt = access.open_table(plan.uri)
        before = int(dt.version())
        within = partition_predicate(plan.partitions, _q)
        merger = dt.merge(
            source,
            predicate=f"t.{_q(plan.subject)} = s.{_q(KEY_COLUMN)}" + (f" AND {within}" if within else ""),
            source_alias="s",
            target_alias="t",
            streamed_exec=True,
            commit_properties=CommitProperties(custom_metadata=dict(plan.metadata) or None),
        )
        if plan.operation == DELETE:
            merger = merger.when_matched_delete()
        elif plan.operation == UPDATE:
            # delta-rs ignores an assignment to a column the table lacks and still commits "rows updated":
            # refuse it, as Spark does, rather than report a mask that was never written
            missing = sorted(set(plan.updates) - set(dt.schema().to_arrow().names))
            if missing:
                raise TableError(f"delta-rs MERGE into {plan.uri}: no column(s) {', '.join(map(repr, missing))}")
            merger = merger.when_matched_update(updates={_q(c): e for c, e in plan.updates.items()})
        else:
            raise ValueError(f"engine erase cannot do {plan.operation!r}")
        try:
            m = merger.execute()
        except Exception as exc:  # only the first line: later lines can hold rows that failed a constraint
            keys = source.column(KEY_COLUMN).to_pylist()
            raise TableError(f"delta-rs MERGE into {plan.uri} failed ({access.error_line(exc, keys)})") from None
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
