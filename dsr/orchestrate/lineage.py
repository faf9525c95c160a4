"""Lineage for downstream users: every Delta commit an erase or sweep task makes is an Airflow Asset event.

The Asset of a table is its storage URI: ``file:///abs/path/to/lake/events`` for a local lake, the table's own
``s3://bucket/prefix/events`` (or other object-store URI) otherwise; its name is the URI too. An analyst's DAG
scheduled on that Asset (``schedule=[Asset("file:///.../events")]``) runs after each erasure and sweep commit
to the table, and can rebuild its aggregates. The tasks declare the alias :data:`ALIAS` as their outlet and add
one event per table they committed to (a mapped erase task commits to one table; tasks that change nothing emit
nothing). The event's extra holds the table name, the operation, the Delta versions before and after, and row
and file counts: never a subject id or request id.

Imported at parse time: Airflow's SDK only.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import quote

__all__ = ["ALIAS", "asset_extra", "asset_uri", "outlets", "publish"]

log = logging.getLogger("dsr.dag")

ALIAS = "dsr-erased-tables"
_COUNTS = ("rows", "files_rewritten", "files_added", "files_matched", "files_scanned", "dv_marked")


def asset_uri(table_uri: str) -> str:
    """A table's Asset URI: its object-store URI as it is, or ``file://`` and the absolute local path."""
    from dsr.delta.storage import is_remote

    if is_remote(table_uri):
        return table_uri.rstrip("/")
    return "file://" + quote(os.path.abspath(table_uri))


def asset_extra(table: str, operation: str, out: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    """The event extra of a task's result for one table, None when it committed nothing (no event)."""
    before, after = out.get("version_before"), out.get("version_after")
    if before is None or after is None or int(after) <= int(before):
        return None
    extra: dict[str, Any] = {"table": table, "operation": operation, "version_before": int(before),
                             "version_after": int(after), "dsr_run": run_id}
    extra.update({k: int(out[k]) for k in _COUNTS if out.get(k) is not None})
    return extra


def outlets() -> list[Any]:
    """The ``outlets`` of the tasks that commit to data tables."""
    from airflow.sdk import AssetAlias

    return [AssetAlias(ALIAS)]


def publish(table_uri: str, extra: dict[str, Any] | None) -> None:
    """Add the table's Asset event to the running task's outlet (nothing when it committed nothing)."""
    if extra is None:
        return
    from airflow.sdk import Asset, AssetAlias, get_current_context

    uri = asset_uri(table_uri)
    get_current_context()["outlet_events"][AssetAlias(ALIAS)].add(Asset(uri), extra=extra)
    log.info("asset event %s: %s", uri, extra)
