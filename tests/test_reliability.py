"""No erasure ends "completed" while the person's rows survive (issue 9, items 1, 3 and 5).

- a run honours coverage: an uncovered personal table stops it before it claims anything;
- retries re-erase: rows appended between the erase commit and verification fail the request, and the next
  attempt erases them (a real concurrent writer process, and a deterministic injection);
- a subject that matches nothing completes as "no data found", unless rows match it after Unicode
  normalisation, case folding or trimming: then it fails for a person to review.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import unicodedata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from dsr import steps
from dsr.cli.receipt import build_receipt
from dsr.core import audit, control
from dsr.core.policy import Policy, check_against_lake, load_policy
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests import real_tables as rt

NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")


def _cli(policy_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSR_PSEUDONYM_KEY": lakes.KEY}
    env.pop("DSR_POLICY", None)
    return subprocess.run([sys.executable, "-m", "dsr.cli", "--policy", str(policy_path), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def _events(users: list[str], start: int = 0) -> pa.Table:
    return pa.table({"event_id": pa.array(range(start, start + len(users)), pa.int64()),
                     "user_id": pa.array(users, pa.string())})


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Policy:
    """events (delete) holding José (NFC), anna, bob and 'dora ' (a trailing blank); max_attempts 5."""
    monkeypatch.delenv("DSR_POLICY", raising=False)
    write_deltalake(str(tmp_path / "lake" / "events"),
                    _events([NFC, "anna", "bob", NFC, "anna", "bob", "dora "]))
    (tmp_path / "dsr.yml").write_text(textwrap.dedent("""\
        lake: ./lake
        exports: ./exports
        max_attempts: 5
        tables:
          - {name: events, path: events, subject: user_id, erase: delete}
        """), encoding="utf-8")
    policy = load_policy(tmp_path / "dsr.yml")
    check_against_lake(policy)
    return policy


# --- 1. coverage -------------------------------------------------------------------------------------------


def test_a_run_claims_nothing_while_a_personal_table_is_uncovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = lakes.build(tmp_path / "w")
    write_deltalake(str(lake.lake / "crm"), pa.table({"user_id": ["1003", "1004"], "score": [1, 2]}))
    monkeypatch.setenv("DSR_PSEUDONYM_KEY", lakes.KEY)
    policy = load_policy(lake.policy_path)
    rid = _cli(lake.policy_path, "request", "erase", "1003").stdout.strip()
    before = rt.tree(lake.lake)
    out = _cli(lake.policy_path, "run")
    assert out.returncode == 1
    assert "crm (subject-like column: user_id)" in out.stderr and "nothing claimed" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "1003" not in out.stderr
    req = control.list_requests(policy, ids=[rid])[0]
    assert (req.status, req.attempts) == ("pending", 0)
    assert {k: v for k, v in rt.tree(lake.lake).items() if not k.startswith("_dsr")} == {
        k: v for k, v in before.items() if not k.startswith("_dsr")}
    check = _cli(lake.policy_path, "check")
    assert check.returncode == 1 and "crm" in check.stdout
    # exempted (or covered), the same run goes through
    text = lake.policy_path.read_text().replace("exempt:\n", "exempt:\n  - {path: crm, reason: \"scores only\"}\n")
    lake.policy_path.write_text(text)
    assert _cli(lake.policy_path, "run").returncode == 0
    assert control.list_requests(policy, ids=[rid])[0].status == "completed"


# --- 3. retries re-erase -----------------------------------------------------------------------------------


def test_rows_appended_after_the_erase_commit_fail_the_request_and_the_retry_erases_them(
    small: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = small.table("events").uri
    rid = control.submit(small, "erase", "anna")[0]
    engine = DeltaRsEngine()
    real_erase = engine.erase

    def erase_then_ingest(plan: Any, source: Any) -> Any:
        result = real_erase(plan, source)
        write_deltalake(uri, _events(["anna", "anna", "carl"], start=100), mode="append")  # a late ingestion
        return result

    monkeypatch.setattr(engine, "erase", erase_then_ingest)
    first = steps.run(small, engine)
    req = control.list_requests(small, ids=[rid])[0]
    assert first.exit_code == 1 and req.status == "failed" and "verification failed" in (req.error or "")
    assert [r["user_id"] for r in rt.read_rows(uri)].count("anna") == 2

    monkeypatch.setattr(engine, "erase", real_erase)
    second = steps.run(small, engine)
    assert second.exit_code == 0, second.as_dict()
    assert control.list_requests(small, ids=[rid])[0].status == "completed"
    users = [r["user_id"] for r in rt.read_rows(uri)]
    assert "anna" not in users and users.count("carl") == 1 and users.count("bob") == 2
    erased = [e for e in audit.events(small, request_id=rid) if e["event"] == "table_erased"]
    assert [e["details"]["rows"] for e in erased] == [2, 2] and erased[1]["details"]["repeat"] is True
    entry = build_receipt(small, rid)["tables"]["events"]
    assert entry["rows"] == 4 and entry["commits"] == 2 and entry["ge_success"] is True


WRITER = textwrap.dedent("""
    import random, sys, time
    import pyarrow as pa
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError
    uri, stop, subject = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = random.Random(7)
    n = 0
    deadline = time.time() + 60
    import os
    while not os.path.exists(stop) and time.time() < deadline:
        ids = [subject, "zed", subject]
        try:
            write_deltalake(uri, pa.table({"event_id": pa.array(range(10_000 + n, 10_003 + n), pa.int64()),
                                           "user_id": pa.array(ids, pa.string())}), mode="append")
            n += 3
        except CommitFailedError:
            pass
        time.sleep(rng.uniform(0.05, 0.2))
    print(n, flush=True)
""")


@pytest.mark.slow
def test_a_concurrent_writer_never_leaves_a_completed_erasure_with_the_persons_rows(
    small: Policy, tmp_path: Path
) -> None:
    """A real ingestion process appends rows of the erased subject every 50-200 ms while dsr runs. Whatever the
    interleaving: no request is completed while verification saw the person, and once the writer stops, the
    request converges within its attempts and the person is gone."""
    uri = small.table("events").uri
    rid = control.submit(small, "erase", "bob")[0]
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, uri, str(stop), "bob"], stdout=subprocess.PIPE,
                              text=True)
    try:
        time.sleep(0.3)
        outcomes = [steps.run(small, DeltaRsEngine()).exit_code for _ in range(2)]
    finally:
        stop.touch()
        appended = int((writer.communicate(timeout=60)[0] or "0").strip() or 0)
    assert appended > 0
    for _ in range(4):
        req = control.list_requests(small, ids=[rid])[0]
        if not control.is_open(req, small):
            break
        outcomes.append(steps.run(small, DeltaRsEngine()).exit_code)
    req = control.list_requests(small, ids=[rid])[0]
    assert req.status == "completed", (outcomes, req.error, req.attempts)
    # every verification that passed saw no row of bob at the version it read
    for e in audit.events(small, request_id=rid):
        if e["event"] == "verified" and e["details"]["success"]:
            version = int(e["details"]["version"])
            assert "bob" not in [r["user_id"] for r in rt.read_rows(uri, version)]
    # the writer has stopped: the completing run erased everything it appended before
    final = max(int(e["details"]["version"]) for e in audit.events(small, request_id=rid)
                if e["event"] == "verified")
    assert final >= max(e["details"]["version_after"] for e in audit.events(small, request_id=rid)
                        if e["event"] == "table_erased")
    rows = rt.read_rows(uri)
    assert [r["user_id"] for r in rows].count("zed") == appended // 3


# --- 5. no data found, near matches --------------------------------------------------------------------------


def test_a_subject_found_nowhere_completes_as_no_data_found(small: Policy) -> None:
    rid = control.submit(small, "erase", "nobody-like-this")[0]
    xid = control.submit(small, "export", "nobody-like-this")[0]
    before = rt.read_rows(small.table("events").uri)
    assert steps.run(small, DeltaRsEngine()).exit_code == 0
    for r in control.list_requests(small, ids=[rid, xid]):
        assert r.status == "completed" and r.result_json()["outcome"] == "no data found"
    assert rt.read_rows(small.table("events").uri) == before
    assert build_receipt(small, rid)["outcome"] == "no data found"
    shown = _cli(Path(small.source), "requests")
    assert "no data found" in shown.stdout
    erased = control.submit(small, "erase", "bob")[0]
    assert steps.run(small, DeltaRsEngine()).exit_code == 0
    assert control.list_requests(small, ids=[erased])[0].result_json()["outcome"] == "erased"


@pytest.mark.parametrize(("typed", "stored", "rows"), [
    (NFD, NFC, 2), ("josé", NFC, 2), ("JOSÉ", NFC, 2), ("dora", "dora ", 1),
])
def test_a_near_match_fails_for_review_and_erases_nothing(small: Policy, typed: str, stored: str, rows: int) -> None:
    assert typed != stored
    uri = small.table("events").uri
    rid = control.submit(small, "erase", typed)[0]
    xid = control.submit(small, "export", typed)[0]
    report = steps.run(small, DeltaRsEngine())
    assert report.exit_code == 1
    for r in control.list_requests(small, ids=[rid, xid]):
        assert r.status == "failed" and r.attempts >= small.max_attempts, r
        assert "match it after Unicode normalisation, case folding or trimming" in (r.error or "")
        assert f"events ({rows} row(s))" in (r.error or "")
        assert stored.strip() not in (r.error or "") and typed not in (r.error or "")
    assert [r["user_id"] for r in rt.read_rows(uri)].count(stored) == rows  # nothing erased: a person reviews it
    assert not list(Path(small.exports).glob("*.json"))  # and no export document for it


# --- 7. a big batch under a small open-file limit ------------------------------------------------------------


@pytest.mark.slow
def test_ten_thousand_exports_in_one_run_under_ulimit_256(tmp_path: Path) -> None:
    ids = [f"u{i:05d}" for i in range(10_000)]
    write_deltalake(str(tmp_path / "lake" / "users"), pa.table({"user_id": ids, "email": [f"{i}@x.org" for i in ids]}))
    write_deltalake(str(tmp_path / "lake" / "events"),
                    pa.table({"user_id": ids[::-1] + ids[:5000], "n": list(range(15_000))}))
    (tmp_path / "dsr.yml").write_text(textwrap.dedent("""\
        lake: ./lake
        exports: ./exports
        tables:
          - {name: users, path: users, subject: user_id, erase: delete}
          - {name: events, path: events, subject: user_id, erase: delete}
        """), encoding="utf-8")
    (tmp_path / "r.csv").write_text("kind,subject_id\n" + "".join(f"export,{i}\n" for i in ids), encoding="utf-8")
    policy_path = tmp_path / "dsr.yml"
    assert _cli(policy_path, "request", "import", str(tmp_path / "r.csv")).returncode == 0
    env = {**os.environ}
    env.pop("DSR_POLICY", None)
    out = subprocess.run(["bash", "-c", f"ulimit -n 256 && {sys.executable} -m dsr.cli --policy {policy_path} run"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "10000 completed, 0 failed" in out.stdout
    docs = sorted((tmp_path / "exports").glob("*.json"))
    assert len(docs) == 10_000
    sample = json.loads(docs[123].read_text(encoding="utf-8"))
    sid = sample["subject_id"]
    assert [r["user_id"] for r in sample["tables"]["users"]] == [sid]
    assert len(sample["tables"]["events"]) == (2 if int(sid[1:]) < 5000 else 1)
    assert not (tmp_path / "exports" / "_parts").exists()
