"""Issue 11's end-to-end proof: one S3 (moto) lake with every place an erased person hides on disk.

* ``dv`` -- a Databricks table with deletion vectors (``log-replay-dv-key-cases``): the people erased there,
  ``0``, ``7`` and ``14``, were deleted by Databricks before, so their rows are masked by deletion vectors but
  still in the file, and ``0`` is the file's minimum in the log statistics;
* ``cdf`` -- change data feed on: the erase itself writes the deleted rows into ``_change_data/``;
* ``by_subject`` -- partitioned by the subject column: directory names and partition values name the person;
* ``stats`` -- anonymised, two files: an erased id is the minimum of one and the maximum of the other;
* the control table, the audit table and the export documents (exports on S3 as well; the erased people were
  exported before their erasure).

After ``dsr run`` dsr's residue scan finds the erased ids in each place; ``dsr purge --dry-run`` writes nothing;
after ``dsr purge`` (``purge_after_hours: 0``) an independent scan of every byte (``tests/bytescan.py``) finds
none of them, every other row is as the run left it, and every table reads on delta-rs and on Sail.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import bytescan, lakes
from tests import real_tables as rt
from tests.invoke import dsr
from tests.moto_s3 import aws_env, moto_server

BUCKET, EXPORTS = "purge-lake", "purge-exports"
LAKE, DOCS = f"s3://{BUCKET}/lake", f"s3://{EXPORTS}/docs"
TEXT_ERASED = ["a-gone-01", "z-gone-06", "m-gone-07"]
DV_ERASED = [0, 7, 14]  # masked by the table's deletion vectors already
KEPT = ["b-keep-02", "c-keep-03", "d-keep-04", "e-keep-05"]
EXPORTED = ["a-gone-01", "z-gone-06"]  # exported, then erased

POLICY = f"""\
lake: {LAKE}
exports: {DOCS}
pseudonym_key_env: {lakes.KEY_ENV}
export_before_erase: true
purge_after_hours: 0
tables:
  - name: dv
    path: dv
    subject: id
    erase: delete
  - name: cdf
    path: cdf
    subject: user_id
    erase: delete
  - name: by_subject
    path: by_subject
    subject: user_id
    erase: delete
  - name: stats
    path: stats
    subject: user_id
    erase: anonymise
    mask:
      user_id: pseudonymise
      email: nullify
"""


def _upload(client: Any, source: Path, bucket: str, prefix: str) -> None:
    for f in sorted(source.rglob("*")):
        if f.is_file():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{f.relative_to(source).as_posix()}", Body=f.read_bytes())


def _build(root: Path, endpoint: str) -> lakes.Lake:
    import boto3
    import pyarrow as pa

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    _upload(client, rt.VENDORED / "log-replay-dv-key-cases", BUCKET, "lake/dv")
    everyone = TEXT_ERASED + KEPT
    cdf_config = {"delta.enableChangeDataFeed": "true"}
    lakes.write_table(f"{LAKE}/cdf", {"user_id": everyone, "n": list(range(len(everyone)))},
                      configuration=cdf_config)
    lakes.write_table(f"{LAKE}/cdf", {"user_id": ["m-gone-07", "b-keep-02"], "n": [70, 20]})
    lakes.write_table(f"{LAKE}/by_subject", {"user_id": ["a-gone-01", "m-gone-07", "b-keep-02", "a-gone-01"],
                                             "page": ["/", "/cart", "/", "/help"]}, partition_by=["user_id"])
    schema = pa.schema([pa.field("user_id", pa.string()), pa.field("email", pa.string())])
    first = ["a-gone-01", "b-keep-02", "c-keep-03"]  # a-gone-01 is this file's minimum
    second = ["d-keep-04", "e-keep-05", "z-gone-06"]  # z-gone-06 is this file's maximum
    for ids in (first, second):
        lakes.write_table(f"{LAKE}/stats", {"user_id": ids, "email": [f"{i}@example.org" for i in ids]},
                          schema=schema)
    root.mkdir(parents=True, exist_ok=True)
    return lakes._lake(root, POLICY)


def _tree() -> dict[str, str]:
    """Every object of both buckets -> the digest of its bytes."""
    return {f"{r}/{key}": hashlib.sha256(data).hexdigest()
            for r in (f"s3://{BUCKET}", f"s3://{EXPORTS}") for key, data in bytescan.objects(r)}


def _rows() -> dict[str, list[dict[str, Any]]]:
    return {name: lakes.snapshot(f"{LAKE}/{name}") for name in ("dv", "cdf", "by_subject", "stats")}


def _cli(lake: lakes.Lake, *args: str) -> Any:
    return dsr("--policy", str(lake.policy_path), *args, env=lake.env)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Build, file, run, scan, dry-run, purge; each stage's output kept for the tests."""
    with moto_server(BUCKET, EXPORTS) as endpoint, pytest.MonkeyPatch.context() as mp:
        aws_env(mp, endpoint)
        lake = _build(tmp_path_factory.mktemp("purge-lake"), endpoint)
        out: dict[str, Any] = {"lake": lake, "before": _rows()}
        ids = {sid: _cli(lake, "request", "erase", sid).stdout.strip()
               for sid in TEXT_ERASED + [str(i) for i in DV_ERASED]}
        for sid in EXPORTED:  # an erasure waits for its person's export (export_before_erase)
            _cli(lake, "request", "export", sid)
        kept_export = _cli(lake, "request", "export", "b-keep-02").stdout.strip()
        out["ids"], out["kept_export"] = ids, kept_export
        out["run"] = _cli(lake, "run", "--json")
        out["after_run"] = _rows()
        out["scan_before"] = bytescan.scan([f"s3://{BUCKET}", f"s3://{EXPORTS}"], TEXT_ERASED, {"id": set(DV_ERASED)})
        out["residue_before"] = _cli(lake, "residue", "--json")
        tree = _tree()
        out["dry"] = _cli(lake, "purge", "--dry-run")
        out["dry_unchanged"] = _tree() == tree
        out["purge"] = _cli(lake, "purge")
        out["after_purge"] = _rows()
        out["scan_after"] = bytescan.scan([f"s3://{BUCKET}", f"s3://{EXPORTS}"], TEXT_ERASED, {"id": set(DV_ERASED)})
        out["residue_after"] = _cli(lake, "residue", "--json")
        out["docs"] = sorted(key for key, _ in bytescan.objects(DOCS) if key.endswith(".zip"))
        yield out


def test_the_run_completes_and_leaves_the_erased_people_on_disk(story: dict[str, Any]) -> None:
    run = story["run"]
    assert run.returncode == 0, run.stdout + run.stderr
    found = story["scan_before"]
    lake = f"s3://{BUCKET}"
    # the independent scan sees them too: removed files, the log, the partition directories, the DV file
    assert found[f"{lake}: names"] > 0 and found[f"{lake}: parquet values"] > 0 and found[f"{lake}: bytes"] > 0
    assert found[f"{lake}: integer values"] > 0 and found[f"{lake}: log integers"] > 0


def test_dsr_residue_finds_each_place_before_the_purge(story: dict[str, Any]) -> None:
    out = story["residue_before"]
    assert out.returncode == 1, out.stdout + out.stderr
    report = {r["request_id"]: r for r in json.loads(out.stdout)["requests"]}
    ids = story["ids"]
    dv = report[ids["0"]]["tables"]["dv"]
    assert dv["data files"] >= 1 and dv["log statistics"] >= 1  # behind a deletion vector; the file's minimum
    assert report[ids["7"]]["tables"]["dv"]["data files"] >= 1
    assert report[ids["m-gone-07"]]["tables"]["cdf"]["change data"] >= 1  # the erase wrote its change data
    by_subject = report[ids["a-gone-01"]]["tables"]["by_subject"]
    assert by_subject["file names"] >= 1 and by_subject["partition values"] >= 1
    assert report[ids["a-gone-01"]]["tables"]["stats"]["log statistics"] >= 1  # a minimum
    assert report[ids["z-gone-06"]]["tables"]["stats"]["log statistics"] >= 1  # a maximum
    for sid in TEXT_ERASED:
        own = report[ids[sid]]["own"]
        assert own["control table"] >= 1 and own["exports"] >= (sid in EXPORTED), sid
    assert not any(sid in out.stdout for sid in TEXT_ERASED)  # counts, never values


def test_a_dry_run_writes_nothing(story: dict[str, Any]) -> None:
    dry = story["dry"]
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert story["dry_unchanged"]
    assert "would become unreadable" in dry.stdout and "would rewrite 1 file(s) with deletion vectors" in dry.stdout


def test_after_the_purge_no_byte_anywhere_names_an_erased_person(story: dict[str, Any]) -> None:
    purge = story["purge"]
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert story["scan_after"] == Counter(), story["scan_after"]
    for table in ("dv", "cdf", "by_subject", "stats"):
        assert any(line.startswith(table) and "are now unreadable" in line for line in purge.stdout.splitlines()), \
            (table, purge.stdout)
    assert "residue: 0" in purge.stdout and "rewrote 1 file(s) with deletion vectors (delta-rs)" in purge.stdout
    assert story["docs"] == [f"{story['kept_export']}.zip"]  # the erased people's documents went with them


def test_every_other_row_is_as_the_run_left_it(story: dict[str, Any]) -> None:
    before, after_run, after = story["before"], story["after_run"], story["after_purge"]
    assert after == after_run
    gone = set(TEXT_ERASED)
    for name in ("cdf", "by_subject"):
        assert after[name] == [r for r in before[name] if r["user_id"] not in gone], name
    assert after["dv"] == before["dv"]  # 0, 7 and 14 were not live rows: nothing visible changed
    assert sorted(r["id"] for r in after["dv"]) == [i for i in range(50) if i not in DV_ERASED]
    kept = [r for r in before["stats"] if r["user_id"] not in gone]
    assert [r for r in after["stats"] if r["user_id"] in KEPT] == kept
    assert sum(r["email"] is None for r in after["stats"]) == 2  # the two erased rows, masked


def test_every_table_reads_on_delta_rs_and_on_sail(story: dict[str, Any], spark_connect: Any) -> None:
    with pytest.MonkeyPatch.context() as mp:  # the S3 endpoint is still the module's moto server
        mp.setenv("AWS_ALLOW_HTTP", "true")
        for name, rows in story["after_purge"].items():
            frame = spark_connect.read.format("delta").load(f"{LAKE}/{name}")
            assert frame.count() == len(rows) > 0, name


def test_dsr_s_own_scan_agrees_after_the_purge(story: dict[str, Any]) -> None:
    # the raw ids are digested in the control table now: dsr residue has nobody left to look for
    out = story["residue_after"]
    assert out.returncode == 0 and json.loads(out.stdout)["requests"] == []
