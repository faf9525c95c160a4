"""Invariant 3 for a whole run: subject ids never reach commit info, the audit log, logs or file names."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.core.policy import check_against_lake, load_policy
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes

EXTRA = "1017"


def _pattern(ids: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(rf"(?<![0-9A-Za-z]){re.escape(i)}(?![0-9A-Za-z])" for i in ids))


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [str(k), *_strings(v)]]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [str(obj)] if isinstance(obj, str) else []


def test_no_subject_id_in_commit_info_audit_logs_or_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lake = lakes.build(tmp_path / "w")
    for k, v in lake.env.items():
        monkeypatch.setenv(k, v)
    policy = load_policy(lake.policy_path)
    check_against_lake(policy)
    ids = [*lakes.ERASE, EXTRA]
    caplog.set_level(logging.DEBUG)
    for sid in ids:
        control.submit(policy, "erase", sid)
    for sid in lakes.EXPORT:
        control.submit(policy, "export", sid)
    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 0
    assert control.list_requests(policy, status="completed")

    secret = _pattern(sorted(set(ids + lakes.EXPORT)))
    # 1. commitInfo of every Delta table (data, control, audit): predicates, metadata, metrics
    logs = list(Path(policy.lake).rglob("_delta_log/*.json"))
    assert len(logs) > 20
    for log_file in logs:
        for line in log_file.read_text(encoding="utf-8").splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                hits = [s for s in _strings(action["commitInfo"]) if secret.search(s)]
                assert not hits, (log_file, hits)
    # 2. the audit table, every column of every row
    for row in audit.events(policy):
        text = json.dumps(row, default=str)
        text = text.replace(row["hash"], "").replace(row["prev_hash"], "")
        assert not secret.search(text), row["event"]
    # 3. log records of the whole run, at DEBUG
    for rec in caplog.records:
        assert not secret.search(rec.getMessage()), rec.getMessage()
    # 4. names of every file written under the lake and the exports
    for f in [*Path(policy.lake).rglob("*"), *Path(policy.exports).rglob("*")]:
        assert not secret.search(f.name), f
    # 5. the run report (what `dsr run --json` prints and what a DAG would pass around)
    assert not secret.search(json.dumps(report.as_dict(), default=str))
