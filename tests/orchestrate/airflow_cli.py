"""The ``airflow`` command of this venv, run the way the DAG tests run it (their own AIRFLOW_HOME in ``env``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def airflow(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "airflow")
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, errors="replace", timeout=timeout)
