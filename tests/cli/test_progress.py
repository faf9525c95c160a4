"""Progress of ``dsr run``, ``dsr sweep`` and ``dsr purge`` on stderr: plain log lines when stderr is not a
terminal, a live line per table on a real pseudo-terminal, nothing with ``--quiet``; stdout stays clean JSON."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tests import lakes
from tests.invoke import dsr
from tests.leaks import Leaks

ERASE = ("1003", "1007")


@pytest.fixture()
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lakes.Lake:
    monkeypatch.delenv("DSR_ENGINE", raising=False)
    lake = lakes.busy(tmp_path / "w").use(monkeypatch)
    for subject in ERASE:
        assert dsr("request", "erase", subject, env=lake.env).returncode == 0
    return lake


def test_run_logs_one_line_per_table_off_a_terminal_and_keeps_json_on_stdout(lake: lakes.Lake) -> None:
    out = dsr("run", "--json", env=lake.env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["summary"]["completed"] == 2
    line = re.search(r"dsr\.progress: erase events: (\d+) row\(s\) changed, (\d+) file\(s\) rewritten", out.stderr)
    assert line is not None, out.stderr
    assert int(line.group(1)) > 0 and int(line.group(2)) > 0
    assert "dsr.progress: verify users:" in out.stderr and "\x1b[K" not in out.stderr
    assert not Leaks(ERASE).found_in(out.stderr)
    swept = dsr("sweep", "--json", env=lake.env)
    assert swept.returncode == 0 and json.loads(swept.stdout)["tables"]
    assert re.search(r"dsr\.progress: sweep events: \d+ row\(s\) scanned, 0 row\(s\) changed, \d+ file\(s\) read",
                     swept.stderr), swept.stderr


def test_quiet_silences_the_progress(lake: lakes.Lake) -> None:
    out = dsr("run", "--quiet", env=lake.env)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert "2 completed" in out.stdout
    purge = dsr("purge", "--dry-run", "-q", env=lake.env)
    assert purge.returncode == 0 and purge.stderr == ""


def test_a_terminal_gets_a_live_line_per_table(lake: lakes.Lake) -> None:
    """stderr on a real pseudo-terminal: each table's line is drawn while it works, then rewritten in place."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "dsr.cli", "run"], stdout=subprocess.PIPE, stderr=slave,
                            env=lake.process_env(), cwd=lake.root)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = proc.communicate(timeout=120)
    os.close(master)
    text = seen.decode()
    assert proc.returncode == 0, text
    assert re.search(r"erase\s+events\s+working\.\.\.\r\x1b\[Kerase\s+events\s+\d+ row\(s\) changed", text), text
    assert "2 completed" in stdout.decode()
    assert not Leaks(ERASE).found_in(text)


def test_a_dry_run_purge_says_what_it_would_remove_and_removes_nothing(lake: lakes.Lake) -> None:
    lake.policy_path.write_text(lake.policy_path.read_text(encoding="utf-8") + "purge_after_hours: 0\n",
                                encoding="utf-8")
    assert dsr("run", "-q", env=lake.env).returncode == 0
    before = lakes.files(lake.lake)
    out = dsr("purge", "--dry-run", env=lake.env)
    assert out.returncode == 0, out.stderr
    line = re.search(r"dsr\.progress: purge events: (?!started)(.*)", out.stderr)
    assert line is not None, out.stderr
    assert re.fullmatch(r"would remove \d+ file\(s\), \d+ bytes", line.group(1)), line.group(1)
    assert "removed" not in out.stderr
    assert lakes.files(lake.lake) == before
    done = dsr("purge", env=lake.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"dsr\.progress: purge events: \d+ file\(s\) removed, \d+ bytes removed", done.stderr), done.stderr


def test_a_dry_run_sweep_says_what_it_would_change(lake: lakes.Lake) -> None:
    assert dsr("run", "-q", env=lake.env).returncode == 0
    late = pa.table({"event_id": pa.array([9001, 9002], pa.int64()), "user_id": ["1003", "1002"],
                     "event_date": ["2026-01-04"] * 2, "page": ["/back", "/x"], "payload": pa.array([b"a", b"b"])})
    lakes.write_table(lake.lake / "events", late, partition_by=["event_date"])  # a replayed load: 1003 is back
    out = dsr("sweep", "--dry-run", "--table", "events", env=lake.env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"dsr\.progress: sweep events: \d+ row\(s\) scanned, \d+ file\(s\) read, would change 1 row\(s\)",
                     out.stderr), out.stderr
    assert "changed" not in out.stderr


def test_an_export_says_rows_exported_not_changed(lake: lakes.Lake) -> None:
    assert dsr("request", "export", "1005", env=lake.env).returncode == 0
    out = dsr("run", env=lake.env)
    assert out.returncode == 0, out.stderr
    exported = re.findall(r"dsr\.progress: export (\w+): (?!started)(.*)", out.stderr)
    assert exported and all(re.fullmatch(r"\d+ row\(s\) exported", text) for _, text in exported), exported
    assert not re.search(r"dsr\.progress: export .*changed", out.stderr), out.stderr
