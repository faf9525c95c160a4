"""Kill a real child process mid-run, run again: the same end state as an uninterrupted run.

The child claims with a zero-length lease (so the next run may take its requests over at once) and is
killed with SIGKILL at a chosen point, including between a table's Delta commit and its audit event.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.core.policy import Policy
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests.packages import document

CHILD = textwrap.dedent("""
    import os, sys
    from dataclasses import replace
    from dsr.core import audit
    from dsr import steps
    from dsr.engines.deltars import DeltaRsEngine
    from dsr.core.policy import load_policy

    point = sys.argv[1]
    policy = replace(load_policy(os.environ["DSR_POLICY"]), claim_ttl_minutes=0)
    engine = DeltaRsEngine()

    if point == "after-commit-before-audit":
        real_append = audit.append_rows  # every append goes through it
        def append(policy, batch, **kw):
            if any(e.event == "table_erased" and e.table_name == "users" for e in batch):
                os.kill(os.getpid(), 9)
            return real_append(policy, batch, **kw)
        audit.append_rows = append

    def stop(here):
        if here == point:
            print("KILL-POINT", flush=True)
            os.kill(os.getpid(), 9)

    batch = steps.claim_batch(policy)
    run_id = batch["run_id"]
    for step in steps.STEPS:
        if step.always:
            break  # the killed run never completes
        for t in batch[step.per_table] if step.per_table else [None]:
            steps.call(step, policy, run_id, engine, t)
            stop(f"{step.name}-{t}" if t else step.name)
    print("NOT KILLED", flush=True)
""")


def _setup(root: Path) -> tuple[lakes.Lake, Policy]:
    lake = lakes.busy(root)
    os.environ.update(lake.env)
    policy = lake.policy()
    lakes.file_requests(policy)
    return lake, policy


def _state(policy: Policy) -> dict[str, Any]:
    tables = {t.name: lakes.snapshot(t.uri) for t in policy.tables}
    docs = {}
    for r in control.list_requests(policy):
        assert r.status == "completed", (r.request_id, r.status, r.error)
        if r.kind == "export":
            doc = document(r.export_uri)
            # the reader streams files in parallel: rows within a table come in no fixed order
            docs[r.subject_id] = {t: sorted(rows, key=lambda x: json.dumps(x, sort_keys=True))
                                  for t, rows in doc["tables"].items()}
    rows: dict[tuple[str, str], int] = {}
    for r in control.list_requests(policy):
        if r.kind == "erase":
            for name, t in r.result_json()["tables"].items():
                rows[(r.subject_id, name)] = t["rows"]
    return {"tables": tables, "exports": docs, "rows": rows}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    saved = dict(os.environ)
    try:
        _, policy = _setup(tmp_path_factory.mktemp("reference") / "w")
        assert steps.run(policy, DeltaRsEngine()).exit_code == 0
        return _state(policy)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["export-users", "erase-events", "after-commit-before-audit", "verify-users"])
def test_killed_run_converges_to_the_uninterrupted_end_state(
    point: str, reference: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in ("DSR_POLICY", "DSR_PSEUDONYM_KEY"):
        monkeypatch.delenv(k, raising=False)
    lake, policy = _setup(tmp_path / "w")
    for k, v in lake.env.items():
        monkeypatch.setenv(k, v)
    child = subprocess.run([sys.executable, "-c", CHILD, point], capture_output=True, text=True,
                           env=lake.process_env(), timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert "NOT KILLED" not in child.stdout
    assert any(r.status == "running" for r in control.list_requests(policy))

    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 0, report.as_dict()
    assert _state(policy) == reference
    n, broken = audit.verify_chain(policy)
    assert broken is None and n > 0
    # the killed run's export parts (personal data) did not outlive the recovery
    assert not [p for p in Path(policy.exports).rglob("*") if "_parts" in p.parts]
    if point == "after-commit-before-audit":
        recovered = [e for e in audit.events(policy) if e["event"] == "table_erased"
                     and e["details"].get("recovered_from_commit")]
        assert recovered and {e["table_name"] for e in recovered} == {"users"}
    # each table holds exactly one erase commit for the batch: no table was erased twice
    for t in policy.tables:
        if t.erase == "retain":
            continue
        commits = [c for c in DeltaRsEngine().history(t.uri, 100) if c.get("dsr.request_ids")]
        assert len(commits) == 1, (t.name, [c["version"] for c in commits])
