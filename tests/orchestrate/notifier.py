"""A notifier for the DAG tests (``DSR_ON_FAILURE=tests.orchestrate.notifier:FileNotifier``): a real Airflow
BaseNotifier that appends the failed task's DAG id, task id and run id to ``$DSR_TEST_ALERTS`` (JSON lines)."""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.sdk import BaseNotifier


class FileNotifier(BaseNotifier):
    def notify(self, context: Any) -> None:
        ti = context["ti"]
        with open(os.environ["DSR_TEST_ALERTS"], "a", encoding="utf-8") as out:
            out.write(json.dumps({"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": context["run_id"]}) + "\n")
