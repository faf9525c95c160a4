"""On Spark the cluster reads the data (invariant 12, issue 22): the dsr process opens no data file of a table
but those its own erase commit added.

A table of 201 files clustered by subject (two subjects per file, as a table sorted by its subject is), one export
and one erasure of the same subject, then ``dsr run --engine spark --remote`` in its own process against a Sail
server in another, the dsr process traced by ``strace`` (``tests/opens.py``: every open of the process, its
threads and its children). What the erase commit added is read from its log entry; every other data file the
process opened is one it read where the cluster should have.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import lakes
from tests.opens import TraceError, commit_adds, require_strace, traced

pytestmark = [pytest.mark.spark, pytest.mark.slow]

FILES = 201
SUBJECT = "subj-0137"  # shares its file with subj-0136: the erase rewrites that file
POLICY = f"""\
lake: ./lake
exports: ./exports
pseudonym_key_env: {lakes.KEY_ENV}
tables:
  - {{name: events, path: events, subject: user_id, erase: delete}}
"""



@pytest.fixture(scope="module")
def sail_process() -> Iterator[str]:
    """A Sail Spark Connect server in its own process: neither the test's nor the traced one."""
    pytest.importorskip("pysail.spark", reason="pysail (the Sail Spark Connect server) is not installed")
    pytest.importorskip("pyspark.sql.connect.session", reason="pyspark[connect] is not installed")
    from tests.sail_server import sail_server

    with sail_server() as remote:
        yield remote


def _clustered(table: Path) -> None:
    """``FILES`` appends of two subjects' rows each (three rows a subject): one file per append, every subject's
    rows in one file."""
    import pyarrow as pa

    for n in range(FILES):
        ids = [f"subj-{2 * n:04d}"] * 3 + [f"subj-{2 * n + 1:04d}"] * 3
        lakes.write_table(table, pa.table({"user_id": ids, "page": ["/", "/cart", "/help"] * 2,
                                           "value": [float(n + i) for i in range(6)]}))


def test_the_dsr_process_opens_no_data_file_but_those_its_erase_commit_added(
    tmp_path: Path, sail_process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_strace()
    from dsr.core import control
    from dsr.core.policy import load_policy

    table = tmp_path / "lake" / "events"
    _clustered(table)
    policy_path = lakes.write_policy(tmp_path, POLICY)
    monkeypatch.setenv(lakes.KEY_ENV, lakes.KEY)
    policy = load_policy(policy_path)
    control.submit(policy, "export", SUBJECT)
    control.submit(policy, "erase", SUBJECT)
    before = lakes.version(table)
    assert before is not None and sum(r["user_id"] == SUBJECT for r in lakes.rows(table)) == 3

    run = traced([sys.executable, "-m", "dsr.cli", "--policy", str(policy_path), "run", "--engine", "spark",
                  "--remote", sail_process, "--json"], cwd=tmp_path, env={**os.environ, lakes.KEY_ENV: lakes.KEY},
                 timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["export events"]["rows"] == 3 and steps["erase events"]["rows"] == 3
    assert steps["verify events"]["success"] is True and report["summary"]["completed"] == 2
    assert not [r for r in lakes.rows(table) if r["user_id"] == SUBJECT]

    after = lakes.version(table)
    assert after is not None and after > before
    added = commit_adds(table, range(before + 1, after + 1))
    assert added, "the erase rewrote the file its subject shared: its commit adds it"
    # the trace saw this process read the table's log: it is looking where the table is
    root = os.path.realpath(table)
    if not [p for p in run.paths if p.startswith(os.path.join(root, "_delta_log") + os.sep)]:
        raise TraceError("the trace shows no read of the table's log: it cannot speak for this process")
    opened = run.data_files(table)
    elsewhere = sorted(opened - added)
    assert not elsewhere, (
        f"the dsr process opened {len(elsewhere)} data file(s) of {FILES} its erase commit did not add "
        f"({len(opened)} opened in all, {len(added)} added by the erase), e.g. {elsewhere[:3]}")
