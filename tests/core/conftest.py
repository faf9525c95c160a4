"""Helpers shared by several test files of tests/core (the fixtures they use are in tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dsr.cli.main import main
from dsr.core import audit
from dsr.core.policy import Policy, load_policy
from dsr.errors import PolicyError
from tests.lakes import SMALL_POLICY, Lake, write_policy

# --- policy texts -------------------------------------------------------------------------------------------


def variant(old: str, new: str, base: str = SMALL_POLICY) -> str:
    """The policy text ``base`` with its first ``old`` replaced by ``new`` (which must be there)."""
    assert old in base, old
    return base.replace(old, new, 1)


def assert_policy_refused(lake: Lake, text: str, named: list[str]) -> None:
    """Loading the policy ``text`` fails with one line that names the file and each of ``named`` (a part given
    as ``a | b | c`` must have each of a, b and c somewhere in the line)."""
    path = write_policy(lake.root, text, name="bad.yml")

    with pytest.raises(PolicyError) as err:
        load_policy(path)

    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    for part in named:
        assert all(p in message for p in part.split(" | ")), message


# --- the audit log ------------------------------------------------------------------------------------------


def audit_events(policy: Policy, event: str) -> list[dict[str, object]]:
    """The audit rows of one kind of event, in chain order."""
    return [e for e in audit.events(policy) if e["event"] == event]


def fill_audit(policy: Policy) -> list[dict[str, Any]]:
    """Six events over four commits; returns the rows in chain order."""
    audit.append(policy, [audit.AuditEvent("received", request_id="req_a", details={"kind": "erase"})])
    audit.append(policy, [audit.AuditEvent("received", request_id="req_b", details={"kind": "export"})])
    audit.append(policy, [
        audit.AuditEvent("claimed", request_id="req_a", run_id="run_1", details={"attempt": 1}),
        audit.AuditEvent("claimed", request_id="req_b", run_id="run_1", details={"attempt": 1}),
    ])
    audit.append(policy, [
        audit.AuditEvent("table_erased", request_id="req_a", run_id="run_1", table_name="events",
                         details={"rows": 3, "version_before": 4, "version_after": 5}),
        audit.AuditEvent("completed", request_id="req_a", run_id="run_1"),
    ])
    return audit.events(policy)


def verify_cli(policy: Policy, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``dsr audit verify``: (exit code, stdout)."""
    code = main(["--policy", policy.source, "audit", "verify"])
    return code, capsys.readouterr().out


def anchor_files(policy: Policy) -> list[Path]:
    """The anchor files of the audit log outside its table, oldest first."""
    return sorted(Path(audit.anchor_uri(policy)).glob("*.json"))


# --- racing processes ---------------------------------------------------------------------------------------


def start_together(script: str, go: str, *args: str) -> list[subprocess.Popen[str]]:
    """Start ``python -c script ARGS`` as processes "a" and "b" (argv: ``*args[:1], me, go, *args[1:]``); once
    both have written ``<go>.<me>.ready``, touch ``go`` so they race from the same instant."""
    first, rest = args[:1], args[1:]
    procs = [subprocess.Popen([sys.executable, "-c", script, *first, me, go, *rest],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for me in ("a", "b")]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{me}.ready").exists() for me in ("a", "b")):
        assert time.monotonic() < deadline, "the racing processes did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    Path(go).touch()
    return procs
