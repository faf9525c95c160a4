"""Shared fixtures and helpers of the dsr/exports/ tests: part writing, expected documents, moto's S3 server."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from dsr.exports import PartWriter
from tests.moto_s3 import aws_env

NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
STAMP = "2025-01-02T03:04:05Z"

SUBJECTS = ["alice@example.com", "subject-4711", "Zoë Ünïcode", "../../etc/passwd", "run_1", "events"]


def _rows_of(i: int, table: str, n: int) -> list[dict[str, Any]]:
    return [{"user_id": 1000 + i, "table": table, "seq": j, "text": "é\n\t\u2028" * (j % 3)} for j in range(n)]


def _write(exports: str, run_id: str, table: str, plan: dict[str, list[dict[str, Any]]], *, seed: int = 0,
           **kw: Any) -> PartWriter:
    """Write the rows of plan (request id -> rows) interleaved across requests, each request's in order."""
    rng = random.Random(seed)
    queues = {rid: list(rows) for rid, rows in plan.items() if rows}
    with PartWriter(exports, run_id, table, list(plan), **kw) as w:
        while queues:
            rid = rng.choice(sorted(queues))
            w.write(rid, queues[rid].pop(0))
            if not queues[rid]:
                del queues[rid]
    return w


def _expected(rid: str, sid: str, tables: dict[str, dict[str, list[dict[str, Any]]]],
              notes: dict[str, str] | None = None) -> dict[str, Any]:
    return {"schema_version": 2, "request_id": rid, "subject_id": sid,
            "identifiers": [{"kind": "subject", "value": sid}], "exported_at": STAMP,
            "tables": {t: plan.get(rid, []) for t, plan in tables.items()}, "notes": notes or {}}


# --- S3 (moto) ------------------------------------------------------------------------------------------------

@pytest.fixture()
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client on the moto server (AWS_* set for dsr)."""
    import boto3

    aws_env(monkeypatch, s3_endpoint)
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


def _keys(s3: Any, prefix: str) -> dict[str, int]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="exp", Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _real(keys: dict[str, int]) -> list[str]:
    """Keys other than pyarrow's empty folder markers ('a/b/')."""
    return sorted(k for k, size in keys.items() if not (k.endswith("/") and size == 0))
