"""Export documents (dsr/exports/documents.py): finish_documents' format, its choice of requests, its refusals,
and documents that are complete or absent — on a local folder and on moto's S3 server."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path
from typing import Any

import pytest

from dsr import exports as exporting
from dsr.core.identifiers import Identifier
from dsr.errors import StepError
from dsr.exports import PartWriter, Person, finish_documents
from tests.exports.conftest import NOW, SUBJECTS, _expected, _keys, _real, _rows_of, _write
from tests.packages import document, document_text

# --- format and streaming -----------------------------------------------------------------------------------


def test_a_document_keeps_its_format(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    row = {"id": 7, "at": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC), "day": dt.date(2024, 5, 6),
           "amount": decimal.Decimal("12.50"), "blob": b"\x00\xff", "x": float("nan"), "tags": [("k", 1)],
           "none": None}
    with PartWriter(ex, "run_1", "events", ["req_a"]) as w:
        w.write("req_a", row)
        w.write("req_a", {"id": 8})
    with PartWriter(ex, "run_1", "users", ["req_a"]):
        pass
    alice = Person("req_a", "Alice@Example.org", (Identifier("email", "alice@example.org"), Identifier("user_id", "7")))
    uris = finish_documents(ex, "run_1", [alice], ["events", "users"], exported_at=NOW,
                            notes={"req_a": {"users": "uncastable"}})
    assert uris == {"req_a": str(tmp_path / "exports" / "req_a.zip")}
    assert w.rows == {"req_a": 2}
    assert document_text(uris["req_a"]) == (
        '{"schema_version":2,"request_id":"req_a","subject_id":"Alice@Example.org",'
        '"identifiers":[{"kind":"email","value":"alice@example.org"},{"kind":"user_id","value":"7"}],'
        '"exported_at":"2025-01-02T03:04:05Z",\n'
        '"tables": {\n'
        ' "events": [\n'
        '  {"id":7,"at":"2024-05-06T07:08:09Z","day":"2024-05-06","amount":"12.50","blob":"AP8=","x":"nan",'
        '"tags":[["k",1]],"none":null},\n'
        '  {"id":8}],\n'
        ' "users": []\n'
        '},\n'
        '"notes": {"users":"uncastable"}}\n'
    )


def test_finish_takes_any_subset_and_refuses_uncovered_requests_or_missing_tables(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    plan = {f"req_{i}": _rows_of(i, "events", 2) for i in range(6)}
    _write(ex, "run_1", "events", plan, buffer_bytes=100, fan_in=2)
    some = [("req_1", "s1"), ("req_4", "s4")]
    uris = finish_documents(ex, "run_1", some, ["events"], exported_at=NOW)
    assert sorted(p.name for p in (tmp_path / "exports").glob("*.zip")) == ["req_1.zip", "req_4.zip"]
    assert document(uris["req_4"])["tables"]["events"] == plan["req_4"]

    with pytest.raises(StepError, match=r"parts of table 'events' for run run_1 do not cover request req_9"):
        finish_documents(ex, "run_1", [("req_0", "s0"), ("req_9", "s9")], ["events"], exported_at=NOW)
    with pytest.raises(StepError, match=r"table 'users' for run run_1 are missing or incomplete"):
        finish_documents(ex, "run_1", [("req_0", "s0")], ["events", "users"], exported_at=NOW)
    with pytest.raises(StepError, match=r"for run run_2 are missing"):
        finish_documents(ex, "run_2", [("req_0", "s0")], ["events"], exported_at=NOW)
    assert not (tmp_path / "exports" / "req_0.zip").exists()  # refused before any document is written
    assert finish_documents(ex, "run_1", [], ["events", "users"], exported_at=NOW) == {}


def test_inconsistent_parts_fail_without_a_half_document(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    _write(ex, "run_1", "events", {f"req_{i}": _rows_of(i, "events", 3) for i in range(4)})
    manifest = tmp_path / "exports" / "_parts" / "run_1" / "events" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["rows"]["req_2"] += 1
    manifest.write_text(json.dumps(m))
    (tmp_path / "exports" / "req_2.zip").write_text('{"old": true}')  # a package from an earlier attempt
    with pytest.raises(StepError, match=r"inconsistent for request req_2: 4 row\(s\) expected, 3 found"):
        finish_documents(ex, "run_1", [(f"req_{i}", f"s{i}") for i in range(4)], ["events"], exported_at=NOW)
    names = sorted(p.name for p in (tmp_path / "exports").iterdir())
    assert names == ["_parts", "req_0.zip", "req_1.zip", "req_2.zip"]  # no .tmp; req_3 not reached
    assert json.loads((tmp_path / "exports" / "req_2.zip").read_text()) == {"old": True}  # untouched
    assert document(str(tmp_path / "exports" / "req_1.zip"))["tables"]["events"] == _rows_of(
        1, "events", 3)


# --- S3 (moto) ------------------------------------------------------------------------------------------------

@pytest.mark.s3
def test_s3_documents_and_cleanup(s3: Any) -> None:
    ex = "s3://exp/docs"
    reqs = [(f"req_{i:02d}", sid) for i, sid in enumerate(SUBJECTS)]
    tables: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for k, t in enumerate(["events", "users"]):
        plan = {rid: _rows_of(i, t, (i + k) % 4) for i, (rid, _) in enumerate(reqs)}
        _write(ex, "run_b", t, plan, seed=k, buffer_bytes=300, fan_in=2)
        tables[t] = plan
    _write("s3a://exp/docs", "run_a", "events", {"req_00": [{"n": 1}]})  # a dead run (s3a:// is the same place)
    uris = finish_documents(ex, "run_b", reqs, ["events", "users"], exported_at=NOW)
    assert uris == {rid: f"s3://exp/docs/{rid}.zip" for rid, _ in reqs}
    for rid, sid in reqs:
        assert document(f"s3://exp/docs/{rid}.zip") == _expected(rid, sid, tables)
    keys = _real(_keys(s3, "docs/"))
    assert not [k for k in keys if any(sid in k for sid in SUBJECTS[:4])]
    assert sorted(k for k in keys if "/_parts/" not in k) == sorted(f"docs/{rid}.zip" for rid, _ in reqs)
    assert {k.split("/")[2] for k in keys if "/_parts/" in k} == {"run_a", "run_b"}

    assert exporting.remove_stale_parts(ex, ["run_b", "run_z"]) == 1
    assert {k.split("/")[2] for k in _real(_keys(s3, "docs/_parts/"))} == {"run_b"}
    exporting.remove_run_parts(ex, "run_b")
    exporting.remove_run_parts(ex, "run_b")
    assert _real(_keys(s3, "docs/_parts/")) == []
    assert sorted(_real(_keys(s3, "docs/"))) == sorted(f"docs/{rid}.zip" for rid, _ in reqs)
    assert exporting.remove_stale_parts(ex, []) == 0


@pytest.mark.s3
def test_s3_a_failed_document_leaves_no_object(s3: Any) -> None:
    ex = "s3://exp/failing"
    _write(ex, "run_1", "events", {f"req_{i}": _rows_of(i, "events", 2) for i in range(3)}, buffer_bytes=1)
    key = "failing/_parts/run_1/events/manifest.json"
    m = json.loads(s3.get_object(Bucket="exp", Key=key)["Body"].read())
    m["rows"]["req_1"] = 5
    s3.put_object(Bucket="exp", Key=key, Body=json.dumps(m).encode())
    with pytest.raises(StepError, match="inconsistent for request req_1"):
        finish_documents(ex, "run_1", [(f"req_{i}", f"s{i}") for i in range(3)], ["events"], exported_at=NOW)
    assert [k for k in _real(_keys(s3, "failing/")) if "_parts" not in k] == ["failing/req_0.zip"]
    exporting.remove_run_parts(ex, "run_1")
    assert _real(_keys(s3, "failing/")) == ["failing/req_0.zip"]
