"""dsr/steps/export.py on a big batch: ten thousand export documents in one run, in a real process whose
open-file limit is 256 (the point of the test: parts are spilled, not held open per request)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import lakes
from tests.invoke import dsr
from tests.packages import document


@pytest.mark.slow
def test_ten_thousand_exports_in_one_run_under_ulimit_256(tmp_path: Path) -> None:
    ids = [f"u{i:05d}" for i in range(10_000)]
    lakes.write_table(tmp_path / "lake" / "users", {"user_id": ids, "email": [f"{i}@x.org" for i in ids]})
    lakes.write_table(tmp_path / "lake" / "events", {"user_id": ids[::-1] + ids[:5000], "n": list(range(15_000))})
    lakes.write_policy(tmp_path, """\
        lake: ./lake
        exports: ./exports
        tables:
          - {name: users, path: users, subject: user_id, erase: delete}
          - {name: events, path: events, subject: user_id, erase: delete}
        """)
    (tmp_path / "r.csv").write_text("kind,subject_id\n" + "".join(f"export,{i}\n" for i in ids), encoding="utf-8")
    policy_path = tmp_path / "dsr.yml"
    assert dsr("--policy", str(policy_path), "request", "import", str(tmp_path / "r.csv")).returncode == 0
    env = {**os.environ}
    env.pop("DSR_POLICY", None)
    out = subprocess.run(["bash", "-c", f"ulimit -n 256 && {sys.executable} -m dsr.cli --policy {policy_path} run"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "10000 completed, 0 failed" in out.stdout
    docs = sorted((tmp_path / "exports").glob("*.zip"))
    assert len(docs) == 10_000
    sample = document(str(docs[123]))
    sid = sample["subject_id"]
    assert [r["user_id"] for r in sample["tables"]["users"]] == [sid]
    assert len(sample["tables"]["events"]) == (2 if int(sid[1:]) < 5000 else 1)
    assert not (tmp_path / "exports" / "_parts").exists()
