"""The demo's privacy check: every text Airflow kept of the demo run, searched for the demo's subject ids."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["airflow_texts", "subject_id_leaks"]


def airflow_texts(airflow_home: str | os.PathLike[str]) -> dict[str, str]:
    """Every text Airflow kept of a run: output files and task logs under AIRFLOW_HOME, and the XCom table."""
    import sqlite3

    home = Path(airflow_home)
    texts = {
        str(p.relative_to(home)): p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(home.rglob("*")) if p.is_file() and p.suffix in (".log", ".json", ".txt", "")
    }
    db = home / "airflow.db"
    if db.exists():
        with sqlite3.connect(db) as con:
            rows = con.execute("SELECT dag_id, run_id, task_id, map_index, key, CAST(value AS TEXT) FROM xcom")
            texts["xcom table"] = "\n".join("\t".join(map(str, row)) for row in rows)
    return texts


def subject_id_leaks(subjects: list[str], texts: Mapping[str, str]) -> list[str]:
    """Names of the texts holding any of the subject ids (as a whole token: not inside a longer number)."""
    pattern = re.compile(
        r"(?<![\w.])(?:" + "|".join(re.escape(s) for s in sorted(set(subjects), key=len, reverse=True)) + r")(?!\w)"
    )
    return [name for name, text in texts.items() if subjects and pattern.search(text)]
