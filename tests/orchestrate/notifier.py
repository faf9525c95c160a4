"""Notifiers for the DAG tests, real Airflow BaseNotifiers that write what they get to a file (JSON lines):

* ``DSR_ON_FAILURE=tests.orchestrate.notifier:FileNotifier`` appends the failed task's DAG id, task id and run id
  to ``$DSR_TEST_ALERTS``;
* ``DSR_EXPORT_NOTIFIER=tests.orchestrate.notifier:RecordingDesk``, an ``ExportReadyNotifier`` subclass as a
  deployment writes one for e-mail or Slack, appends each message its ``send`` gets to ``$DSR_TEST_EXPORTS``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier

from dsr.orchestrate.export_notifier import ExportReadyNotifier


class FileNotifier(BaseNotifier):
    def notify(self, context: Any) -> None:
        ti = context["ti"]
        with open(os.environ["DSR_TEST_ALERTS"], "a", encoding="utf-8") as out:
            out.write(json.dumps({"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": context["run_id"]}) + "\n")


class RecordingDesk(ExportReadyNotifier):
    channel = "recording-desk"

    def send(self, message: Mapping[str, Any]) -> None:
        with open(os.environ["DSR_TEST_EXPORTS"], "a", encoding="utf-8") as out:
            out.write(json.dumps(dict(message), sort_keys=True) + "\n")
