"""``airflow dags test dsr_backfill`` with the trigger form's Params: a dry run, then the backfill itself.

Airflow runs in a subprocess on a throw-away AIRFLOW_HOME (SQLite, ``airflow db migrate`` first). The lake is
the small one after an erasure of u1, with rows of u1 appended since (a replayed load).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests import lakes
from tests.invoke import dsr
from tests.leaks import Leaks

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "airflow")
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, errors="replace", timeout=300)


@pytest.fixture(scope="module")
def backfill(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("backfill")
    lake = lakes.small(root / "w")
    assert dsr("--policy", str(lake.policy_path), "request", "erase", "u1", env=lake.env).returncode == 0
    assert dsr("--policy", str(lake.policy_path), "run", env=lake.env).returncode == 0
    lakes.write_table(lake.lake / "events", {"user_id": ["u1", "u2", "u1"], "page": ["/r1", "/r2", "/r3"]})
    users = pa.schema([pa.field("user_id", pa.string(), nullable=False), pa.field("email", pa.string()),
                       pa.field("full_name", pa.string()), pa.field("birth_date", pa.date32()),
                       pa.field("last_ip", pa.string()), pa.field("password_hash", pa.string())])
    lakes.write_table(lake.lake / "users", pa.Table.from_pylist([{
        "user_id": "u1", "email": "u1@example.org", "full_name": "Ann", "birth_date": None, "last_ip": None,
        "password_hash": "late"}], schema=users))
    home = root / "airflow_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DSR_", "SPARK_REMOTE"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "DSR_ENGINE": "delta-rs", **lake.env})
    migrate = _airflow(["db", "migrate"], env)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    out: dict[str, Any] = {"lake": lake, "env": env, "home": home, "before": lakes.files(lake.root)}
    out["bad"] = _airflow(["dags", "test", "dsr_backfill", "-c", json.dumps({"tables": ["nope"]})], env)
    out["retained"] = _airflow(["dags", "test", "dsr_backfill", "-c", json.dumps({"tables": ["consents"]})], env)
    out["after_bad"] = lakes.files(lake.root)
    out["dry"] = _airflow(["dags", "test", "dsr_backfill", "-c", json.dumps({"tables": ["events"]})], env)
    out["after_dry"] = lakes.files(lake.root)
    out["apply"] = _airflow(["dags", "test", "dsr_backfill", "-c",
                             json.dumps({"tables": ["events"], "dry_run": False})], env)
    return out


def _log(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def _summary_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """What the summary task logged (the messages of dsr.dag's records from the summary task), in order."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", _log(proc))
    start = text.index("starting task_id=summary")
    found = re.findall(r"(?m)(?:^|\] )((?:events|users) +\S.*?|sweep .*?)(?: +\[[\w.]+\].*)?$", text[start:])
    return [f.rstrip() for f in found]


def test_a_bad_table_name_fails_the_run_before_anything_is_written(backfill: dict[str, Any]) -> None:
    """The message names the DAG's param (not the CLI's --table) and offers only the tables a sweep can change,
    never the retained one; a retained table chosen is refused the same way."""
    for run, name in ((backfill["bad"], "nope"), (backfill["retained"], "consents")):
        assert run.returncode != 0
        text = _log(run)
        assert f"Tables (param \"tables\") '{name}': " in text, text[-3000:]
        assert "(tables that can be swept: events, users)" in text
        assert "--table" not in text
    assert "no such table in the policy" in _log(backfill["bad"])
    assert "retained by policy" in _log(backfill["retained"])
    assert backfill["after_bad"] == backfill["before"]


def test_the_dry_run_counts_and_writes_nothing(backfill: dict[str, Any]) -> None:
    dry = backfill["dry"]
    assert dry.returncode == 0, _log(dry)[-5000:]
    lines = _summary_lines(dry)
    assert lines[-1] == "sweep (dry run): 2 row(s) would change in 1 table(s); nothing was written", lines
    assert re.fullmatch(r"events +full: \d+ of \d+ file\(s\) read; would delete 2 row\(s\) in 1 file\(s\) "
                        r"of 1 erased subject\(s\) \(of 1 on the suppression list\)", lines[0]), lines
    assert backfill["after_dry"] == backfill["before"]


def test_the_backfill_erases_the_chosen_table_only_and_the_summary_shows_the_counts(backfill: dict[str, Any]
                                                                                    ) -> None:
    done = backfill["apply"]
    assert done.returncode == 0, _log(done)[-5000:]
    text = _log(done)
    last = _summary_lines(done)[-1]
    assert re.fullmatch(r"sweep (swp_[0-9a-f]{16}): 2 row\(s\) changed in 1 table\(s\); dsr receipt \1", last), last
    lake: lakes.Lake = backfill["lake"]
    pages = sorted(((r["user_id"], r["page"]) for r in lakes.rows(lake.lake / "events")), key=repr)
    assert pages == sorted([("u2", "/cart"), (None, "/help"), ("u2", "/r2")], key=repr)
    assert "late" in {r["password_hash"] for r in lakes.rows(lake.lake / "users") if r["user_id"] == "u1"}
    sweep_id = re.findall(r"dsr receipt (swp_[0-9a-f]{16})", text)[-1]
    receipt = dsr("--policy", str(lake.policy_path), "receipt", sweep_id, env=lake.env)
    assert receipt.returncode == 0 and "2 row(s) deleted" in receipt.stdout, receipt.stdout + receipt.stderr


def test_no_subject_id_reaches_airflow(backfill: dict[str, Any]) -> None:
    leaks = Leaks(["u1", "u2"])
    assert leaks.found_in(_log(backfill["dry"]) + _log(backfill["apply"])) == []
    with sqlite3.connect(backfill["home"] / "airflow.db") as con:
        xcom = con.execute("SELECT task_id, value FROM xcom WHERE dag_id = 'dsr_backfill'").fetchall()
    assert xcom and leaks.in_texts({f"{t}.{i}": str(v) for i, (t, v) in enumerate(xcom)}) == []
