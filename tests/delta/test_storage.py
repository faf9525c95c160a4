"""The whole run on an S3 lake and S3 exports, against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.core.policy import check_against_lake, load_policy
from dsr.delta import storage
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests.packages import document

pytestmark = pytest.mark.s3


def test_run_on_an_s3_lake_erases_exports_and_verifies(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    lake = lakes.busy(tmp_path / "w", lake_uri="s3://lake/prod", exports_uri="s3://lake/exports")
    for k, v in lake.env.items():
        monkeypatch.setenv(k, v)
    policy = load_policy(lake.policy_path)
    assert policy.lake == "s3://lake/prod" and policy.table("orders").uri == "s3://lake/prod/sales/orders"
    check_against_lake(policy)
    from dsr.core.coverage import uncovered_tables

    assert uncovered_tables(policy) == []
    for sid in lakes.ERASE:
        control.submit(policy, "erase", sid)
    export_id, _ = control.submit(policy, "export", "1005")
    before = lakes.snapshot(policy.table("events").uri)

    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 0, report.as_dict()

    after = lakes.snapshot(policy.table("events").uri)
    assert not [r for r in after if r["user_id"] in lakes.ERASE]
    assert after == [r for r in before if r["user_id"] not in lakes.ERASE]
    uri = control.list_requests(policy, ids=[export_id])[0].export_uri
    assert uri == f"s3://lake/exports/{export_id}.zip"
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    doc = document(f"s3://lake/exports/{export_id}.zip")
    assert doc["subject_id"] == "1005"
    assert len(doc["tables"]["events"]) == sum(1 for r in before if r["user_id"] == "1005")
    objects = s3.list_objects_v2(Bucket="lake", Prefix="exports/").get("Contents", [])
    files = [o["Key"] for o in objects if not o["Key"].endswith("/")]
    assert files == [f"exports/{export_id}.zip"]  # the parts are cleaned up (pyarrow may keep folder markers)
    assert audit.verify_chain(policy)[1] is None
    assert storage.is_remote(policy.audit_uri)


def test_purge_and_residue_on_an_s3_lake(s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a run, the residue scan finds the erased rows in the removed objects; after a purge with no window,
    no object under the tables names them, and the tables still read."""
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dsr.steps import purge as purging
    from dsr.verify import residue

    lake = lakes.busy(tmp_path / "w", lake_uri="s3://lake/purge", exports_uri="s3://lake/purge-exports")
    lake.policy_path.write_text(lake.policy_path.read_text() + "purge_after_hours: 0\n", encoding="utf-8")
    policy = lake.use(monkeypatch).policy()
    rid, _ = control.submit(policy, "erase", "1007")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    (found,) = residue.scan(policy, control.list_requests(policy, ids=[rid]))
    assert found.tables["events"]["data files"] > 0
    after_run = lakes.snapshot(policy.table("events").uri)

    report = purging.purge(policy)
    assert report.exit_code == 0 and {t.table: t.residue for t in report.tables} == {
        "events": 0, "users": 0, "orders": 0}
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="lake", Prefix="purge/events/")
            for o in page.get("Contents", [])]
    data = [k for k in keys if k.endswith(".parquet") and "/_delta_log/" not in k]
    assert data
    for key in data:  # every object, read with pyarrow straight from the bucket
        body = s3.get_object(Bucket="lake", Key=key)["Body"].read()
        assert "1007" not in pq.read_table(pa.BufferReader(body)).column("user_id").to_pylist()
    logs = [k for k in keys if k.endswith(".json")]
    assert not [k for k in logs if b'"1007"' in s3.get_object(Bucket="lake", Key=k)["Body"].read()]
    assert lakes.snapshot(policy.table("events").uri) == after_run
