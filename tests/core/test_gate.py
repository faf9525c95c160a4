"""The protocol gate on real tables: ``dsr check`` names every feature the reader or the engine cannot
handle (``--json`` lists them), and ``dsr run`` refuses such a table before any write, failing its requests
with the reason at once while the other tables are processed.

The refused tables are real delta-rs tables whose protocol was then upgraded by a commit of its own (as
Spark or Databricks would do), to features delta-rs cannot write or nobody has declared yet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from dsr import steps
from dsr.core import control
from dsr.core.policy import check_against_lake, load_policy
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes

KEY = "gate-test-key-0123456789abcdef"


def upgrade(path: Path, *, reader: list[str] | None = None, writer: list[str], config: dict[str, str] | None = None,
            column_meta: dict[str, dict[str, Any]] | None = None) -> None:
    """Append a commit that upgrades the table's protocol (and metadata), as another writer would."""
    log = path / "_delta_log"
    last = sorted(log.glob("*.json"))[-1]
    version = int(last.stem) + 1
    first = log / f"{0:020d}.json"
    meta = next(json.loads(line)["metaData"] for line in first.read_text().splitlines() if '"metaData"' in line)
    meta["configuration"] = {**meta.get("configuration", {}), **(config or {})}
    if column_meta:
        schema = json.loads(meta["schemaString"])
        for f in schema["fields"]:
            f["metadata"] = {**f.get("metadata", {}), **column_meta.get(f["name"], {})}
        meta["schemaString"] = json.dumps(schema)
    protocol: dict[str, Any] = {"minReaderVersion": 3 if reader else 1, "minWriterVersion": 7,
                                "writerFeatures": writer}
    if reader:
        protocol["readerFeatures"] = reader
    (log / f"{version:020d}.json").write_text(json.dumps({"protocol": protocol}) + "\n" + json.dumps(
        {"metaData": meta}) + "\n")


def people(n: int = 6) -> pa.Table:
    return pa.table({"user_id": pa.array([f"u{i % 3}" for i in range(n)]), "note": [f"n{i}" for i in range(n)],
                     "id": pa.array(range(n), pa.int64())})


CRAFTED = {
    # name: (upgrade kwargs, the feature dsr check must name, the operation refused)
    "future_reader": ({"reader": ["quantumSkipping"], "writer": ["quantumSkipping"]}, "quantumSkipping", "read"),
    "future_writer": ({"writer": ["fancyWriterThing"]}, "fancyWriterThing", "delete"),
    "row_tracking": ({"writer": ["rowTracking", "domainMetadata"],
                      "config": {"delta.enableRowTracking": "true"}}, "rowTracking", "delete"),
    "identity": ({"writer": ["identityColumns"], "column_meta": {"id": {"delta.identity.start": 1,
                                                                         "delta.identity.step": 1}}},
                 "identityColumns", "delete"),
    "in_commit_ts": ({"writer": ["inCommitTimestamp"], "config": {"delta.enableInCommitTimestamps": "true"}},
                     "inCommitTimestamp", "delete"),
    "append_only": ({"writer": ["appendOnly"], "config": {"delta.appendOnly": "true"}}, "appendOnly", "delete"),
}


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSR_PSEUDONYM_KEY": KEY}
    env.pop("DSR_POLICY", None)
    return subprocess.run([sys.executable, "-m", "dsr.cli", "--policy", str(root / "dsr.yml"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lake with one plain table (events) and one crafted table per unsupported feature."""
    monkeypatch.setenv("DSR_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    write_deltalake(str(tmp_path / "lake" / "events"), people(9))
    tables = ["  - {name: events, path: events, subject: user_id, erase: delete}"]
    for name, (kwargs, _, _) in CRAFTED.items():
        write_deltalake(str(tmp_path / "lake" / name), people())
        upgrade(tmp_path / "lake" / name, **kwargs)
        tables.append(f"  - {{name: {name}, path: {name}, subject: user_id, erase: delete}}")
    (tmp_path / "dsr.yml").write_text(textwrap.dedent("""\
        lake: ./lake
        exports: ./exports
        export_before_erase: true
        tables:
        """) + "\n".join(tables) + "\n", encoding="utf-8")
    return tmp_path


def test_dsr_check_names_every_unsupported_feature_and_exits_1(lake: Path) -> None:
    out = _cli(lake, "check")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{len(CRAFTED)} table(s) cannot be processed on engine delta-rs" in out.stdout
    for name, (_, feature, _op) in CRAFTED.items():
        assert f"  {name} (path {name}, delete):" in out.stdout
        assert feature in out.stdout
    assert "events (" not in out.stdout
    assert "rowTracking (writer feature): delta-rs cannot delete it; handled by spark (delta-spark/Databricks)" \
        in out.stdout
    assert "appendOnly (delta.appendOnly=true): delta-rs cannot delete it\n" in out.stdout  # nobody can

    as_json = _cli(lake, "check", "--json")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["engine"] == "delta-rs"
    by_table = {t["table"]: t for t in doc["unsupported"]}
    assert set(by_table) == set(CRAFTED)
    for name, (_, feature, op) in CRAFTED.items():
        assert any(f["feature"] == feature and f["operation"] == op for f in by_table[name]["features"]), name
    assert [t["ok"] for t in doc["tables"] if t["table"] == "events"] == [True]


def test_dsr_check_on_the_spark_engine_judges_by_its_server(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSR_SPARK_SERVER", "delta-spark")
    env_run = subprocess.run(
        [sys.executable, "-m", "dsr.cli", "--policy", str(lake / "dsr.yml"), "check", "--engine", "spark", "--json"],
        capture_output=True, text=True, env={**os.environ, "DSR_PSEUDONYM_KEY": KEY}, timeout=300)
    doc = json.loads(env_run.stdout)
    assert doc["engine"] == "spark (delta-spark/Databricks)"
    # delta-spark writes row tracking, identity columns and in-commit timestamps; nobody reads the future
    assert {t["table"] for t in doc["unsupported"]} == {"future_reader", "future_writer", "append_only"}


def test_dsr_run_refuses_before_any_write_and_processes_the_other_tables(lake: Path) -> None:
    policy = load_policy(lake / "dsr.yml")
    check_against_lake(policy)
    before = {name: lakes.files(lake / "lake" / name) for name in CRAFTED}
    erase_id = control.submit(policy, "erase", "u1")[0]
    export_id = control.submit(policy, "export", "u1")[0]
    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 1
    assert any("future_reader" in e and "quantumSkipping" in e for e in report.errors)

    # nothing written under any refused table
    assert {name: lakes.files(lake / "lake" / name) for name in CRAFTED} == before
    # the export failed at once (the unreadable table), for good, naming table and feature
    export = control.list_requests(policy, ids=[export_id])[0]
    assert export.status == "failed" and export.attempts >= policy.max_attempts
    assert "future_reader" in (export.error or "") and "quantumSkipping" in (export.error or "")
    # the erasure did not wait for it: the plain table is erased, the request failed with every reason
    assert not [r for r in lakes.rows(str(lake / "lake" / "events")) if r["user_id"] == "u1"]
    erase = control.list_requests(policy, ids=[erase_id])[0]
    assert erase.status == "failed" and erase.attempts >= policy.max_attempts
    for name, (_, feature, _) in CRAFTED.items():
        assert name in (erase.error or "") and feature in (erase.error or ""), name
    assert "u1" not in (erase.error or "") + (export.error or "")

    # dsr requests and the receipt show the cause; a later run does not retry it
    shown = _cli(lake, "requests", "--status", "failed")
    assert "rowTracking" in shown.stdout and "u1" not in shown.stdout
    receipt = json.loads(_cli(lake, "receipt", erase_id, "--json").stdout)
    assert "identityColumns" in receipt["tables"]["identity"]["error"]
    assert receipt["tables"]["events"]["ge_success"] is True and receipt["tables"]["events"]["rows"] == 3
    again = steps.run(policy, DeltaRsEngine())
    assert again.claimed["requests"] == 0
    # filed again once fixed (here: the refused tables taken out of the policy and exempted), it completes
    kept = [line for line in (lake / "dsr.yml").read_text().splitlines()
            if "events" in line or not line.startswith("  - ")]
    exempt = [f"  - {{path: {name}, reason: \"archived, handled by hand\"}}" for name in CRAFTED]
    (lake / "dsr.yml").write_text("\n".join([*kept, "exempt:", *exempt]) + "\n")
    fixed = load_policy(lake / "dsr.yml")
    new_id, created = control.submit(fixed, "erase", "u1")
    assert created and new_id != erase_id
    assert steps.run(fixed, DeltaRsEngine()).exit_code == 0


def test_an_unreadable_table_log_is_one_error_line_not_a_traceback(lake: Path) -> None:
    log = lake / "lake" / "events" / "_delta_log"
    (log / f"{1:020d}.json").write_text('{"add": {"path": "part-x.parquet", "size": 1')  # truncated commit
    for args in (("check",), ("run",), ("verify",)):
        out = _cli(lake, *args)
        assert out.returncode == 2, args
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "table 'events'" in lines[0] and "cannot open the Delta table" in lines[0]
