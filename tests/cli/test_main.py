"""dsr/cli/main.py: the ``dsr`` command as scripts and DAGs see it: exit codes, stdout vs stderr, one-line errors.

Commands run in this process (``tests.invoke.dsr``); ``dsr_process`` where the real process is the point (help
text and a usage error as a fresh interpreter prints them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dsr.core.policy import load_policy
from tests import lakes
from tests.invoke import dsr, dsr_process
from tests.lakes import SMALL_POLICY, Lake, write_policy, write_table

HEAVY = ("pyarrow", "deltalake", "great_expectations", "pyspark", "airflow", "pandas", "numpy", "yaml")


def test_importing_the_cli_and_building_its_parser_loads_no_heavy_library() -> None:
    code = (
        "import sys, dsr.cli.main; dsr.cli.main._parser(); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_dsr_help_lists_every_command_and_the_exit_codes() -> None:
    proc = dsr_process("--help")

    assert proc.returncode == 0 and proc.stderr == ""
    for command in ("check", "request", "requests", "run", "verify", "receipt", "audit", "demo"):
        assert command in proc.stdout
    assert "2 bad usage" in proc.stdout


def test_bad_usage_exits_2_with_one_line_on_stderr(tmp_path: Path) -> None:
    proc = dsr_process("request", "shred", "u1", cwd=tmp_path)

    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "invalid choice" in proc.stderr


def test_request_then_requests_json_shows_one_pending_erase_with_a_due_date(small_lake: Lake) -> None:
    root = small_lake.root  # ./dsr.yml is the default policy

    first = dsr("request", "erase", "u1", "--ticket", "T-1", cwd=root, env={"DSR_POLICY": ""})
    listed = dsr("requests", "--json", cwd=root, env={"DSR_POLICY": ""})

    assert first.returncode == 0 and first.stderr == ""
    rid = first.stdout.strip()
    assert rid.startswith("req_")
    assert listed.returncode == 0 and listed.stderr == ""
    (req,) = json.loads(listed.stdout)
    assert (req["request_id"], req["kind"], req["status"], req["ticket"]) == (rid, "erase", "pending", "T-1")
    assert req["due_at"] > req["received_at"] and req["overdue"] is False

    again = dsr("request", "erase", "u1", "--ticket", "T-1", cwd=root, env={"DSR_POLICY": ""})

    assert again.returncode == 0 and again.stdout.strip() == rid
    assert "exists already" in again.stderr and len(again.stderr.splitlines()) == 1
    assert len(json.loads(dsr("requests", "--json", cwd=root, env={"DSR_POLICY": ""}).stdout)) == 1


def test_request_import_and_the_requests_table(small_lake: Lake) -> None:
    csv_path = small_lake.root / "batch.csv"
    csv_path.write_text("kind,subject_id,ticket\nerase,u1,T-1\nexport,u2,T-2\nerase,u1,T-3\n", encoding="utf-8")

    imported = dsr("request", "import", str(csv_path), env=small_lake.env)
    table = dsr("requests", "--status", "pending", env=small_lake.env)

    assert imported.returncode == 0
    lines = imported.stdout.splitlines()
    assert [ln.split("\t")[1] for ln in lines] == ["added", "added", "duplicate of an open request"]
    assert imported.stderr.strip() == "imported 2 new request(s), 1 duplicate(s)"
    assert table.returncode == 0 and table.stderr == ""
    assert table.stdout.splitlines()[0].split() == ["REQUEST", "KIND", "STATUS", "DUE", "TRIES", "TICKET"]
    assert len(table.stdout.splitlines()) == 3


def test_requests_on_a_fresh_lake_says_there_are_none(small_lake: Lake) -> None:
    proc = dsr("requests", env=small_lake.env)

    assert proc.returncode == 0 and proc.stdout.strip() == "no requests"
    assert lakes.version(small_lake.lake / "_dsr" / "requests") is None


def test_audit_verify_after_intake_is_ok(small_lake: Lake) -> None:
    dsr("request", "export", "u2", env=small_lake.env)

    proc = dsr("audit", "verify", env=small_lake.env)

    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.strip() == "audit chain OK: 1 event(s)"


# --- dsr check: the completeness guardrail -------------------------------------------------------------------


def test_dsr_check_fails_on_an_uncovered_personal_table_until_it_is_exempted_or_added(
    small_lake: Lake,
) -> None:
    write_table(small_lake.lake / "sales" / "orders", {"order_id": ["o1"], "user_id": ["u1"]})
    env = small_lake.env

    uncovered = dsr("check", env=env)

    assert uncovered.returncode == 1, uncovered.stderr
    assert "sales/orders" in uncovered.stdout and "user_id" in uncovered.stdout
    assert "geo_lookup" not in uncovered.stdout and "_dsr" not in uncovered.stdout

    write_policy(small_lake.root, SMALL_POLICY + 'exempt:\n  - {path: sales/orders, reason: "test data"}\n')
    exempted = dsr("check", env=env)
    assert exempted.returncode == 0, exempted.stdout + exempted.stderr
    assert exempted.stdout.strip() == ("dsr check: policy OK; 3 table(s) covered, 1 exempt; every table's Delta "
                                       "features handled on engine delta-rs")

    orders = "  - {name: orders, path: sales/orders, subject: user_id, erase: delete}\n"
    write_policy(small_lake.root, SMALL_POLICY + orders)
    added = dsr("check", env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    assert added.stdout.strip() == ("dsr check: policy OK; 4 table(s) covered, 0 exempt; every table's Delta "
                                    "features handled on engine delta-rs")


def test_dsr_check_on_a_missing_policy_exits_2(tmp_path: Path) -> None:
    proc = dsr("check", cwd=tmp_path, env={"DSR_POLICY": ""})

    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "dsr: error: policy file not found: dsr.yml (use --policy FILE or set DSR_POLICY)"
    ]


# --- clean exits --------------------------------------------------------------------------------------------


def test_reads_never_go_through_deltalakes_python_filesystem(
    small_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deltalake's default pyarrow filesystem (a PyFileSystem over DeltaStorageHandler) is called from Arrow's
    I/O threads; at interpreter exit that intermittently aborts the process with "terminate called without an
    active exception" (exit 134), which would break the CLI's exit codes and its one-line stderr."""
    from deltalake import fs

    from dsr.core import audit, control

    policy = load_policy(small_lake.policy_path)
    rid, _ = control.submit(policy, "erase", "u1")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("read through deltalake's Python-backed filesystem")

    monkeypatch.setattr(fs.DeltaStorageHandler, "from_table", refuse)
    (claimed,) = control.claim(policy, control.new_run_id())

    assert claimed.request_id == rid
    assert [r.request_id for r in control.list_requests(policy)] == [rid]
    assert audit.verify_chain(policy) == (2, None)


# --- issue 9: bad input is one line on stderr, exit 2, nothing written ---------------------------------------


def _assert_refused(proc: subprocess.CompletedProcess[str], *named: str) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr starting 'dsr: error:', no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dsr: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for part in named:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def _bad_policy_cases(outside: Path) -> dict[str, tuple[str, str]]:
    """Each case: the policy text, and what the one-line message must name."""
    events = "  - name: events\n    path: events\n"
    return {
        "second-tables-list": (SMALL_POLICY + "tables:\n  - {name: x, path: x, subject: user_id, erase: delete}\n",
                               "duplicate key 'tables' at line 25 (first at line 4)"),
        "second-erase": (SMALL_POLICY.replace("    erase: delete\n", "    erase: delete\n    erase: retain\n", 1),
                         "duplicate key 'erase' at line 9"),
        "name-is-a-path": (SMALL_POLICY.replace(events, f"  - name: {outside}/OUTSIDE\n    path: events\n", 1),
                           "is not a table name"),
        "name-climbs": (SMALL_POLICY.replace(events, "  - name: ../..\n    path: events\n", 1), "is not a table name"),
        "control-outside": (SMALL_POLICY + "control: ../../x\n", "'control' must be a relative folder"),
        "path-outside": (SMALL_POLICY.replace(events, f"  - name: events\n    path: {outside}\n", 1),
                         "is outside the lake"),
        "exempt-outside": (SMALL_POLICY + "exempt:\n  - {path: ../../geo, reason: x}\n", "leaves the lake"),
        "due-days-huge": (SMALL_POLICY + "due_days: 1000000000000\n",
                          "'due_days' must be a whole number from 0 to 3650"),
        "claim-ttl-huge": (SMALL_POLICY + "claim_ttl_minutes: 1000000000000\n", "from 1 to 10080"),
    }


@pytest.mark.parametrize(
    "case",
    ["second-tables-list", "second-erase", "name-is-a-path", "name-climbs", "control-outside", "path-outside",
     "exempt-outside", "due-days-huge", "claim-ttl-huge", "not-utf8", "a-directory"],
)
def test_a_bad_policy_refuses_every_command_in_one_line_and_writes_nothing(
    small_lake: Lake, tmp_path: Path, case: str
) -> None:
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    root = small_lake.root
    filed = dsr("request", "export", "u1", env=small_lake.env)  # pending work a run would export
    assert filed.returncode == 0, filed.stderr
    if case == "not-utf8":
        bad, named = root / "bad.yml", "not UTF-8 text (invalid byte at line 2)"
        bad.write_bytes(b"lake: ./lake\n# caf\xe9\n" + SMALL_POLICY.encode())
    elif case == "a-directory":
        bad, named = root / "lake", "is a directory, not a policy file"
    else:
        text, named = _bad_policy_cases(outside)[case]
        bad = write_policy(root, text, name="bad.yml")
    before = lakes.files(root / "lake", root / "exports", outside)

    for command in (("run",), ("check",), ("request", "erase", "u2"), ("requests",)):
        proc = dsr("--policy", str(bad), *command, env=small_lake.env)
        _assert_refused(proc, named, str(bad))

    assert lakes.files(root / "lake", root / "exports", outside) == before
    assert not outside.exists()


def test_filing_and_reading_need_no_key_but_processing_does(
    small_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.lakes import KEY, KEY_ENV

    monkeypatch.delenv(KEY_ENV)
    root = small_lake.root
    env = {"DSR_POLICY": str(small_lake.policy_path)}  # no key: an auditor, a compliance clerk
    csv_path = root / "batch.csv"
    csv_path.write_text("kind,subject_id\nexport,u2\n", encoding="utf-8")

    erase = dsr("request", "erase", "u1", "--ticket", "T-1", env=env)
    imported = dsr("request", "import", str(csv_path), env=env)
    assert erase.returncode == 0 and erase.stderr == "", erase.stderr
    assert imported.returncode == 0, imported.stderr
    rid = erase.stdout.strip()
    listed = dsr("requests", "--json", env=env)
    receipt = dsr("receipt", rid, env=env)
    audit = dsr("audit", "verify", env=env)
    assert listed.returncode == 0 and [r["status"] for r in json.loads(listed.stdout)] == ["pending", "pending"]
    assert receipt.returncode == 0 and rid in receipt.stdout, receipt.stderr
    assert audit.returncode == 0 and audit.stdout.strip() == "audit chain OK: 2 event(s)", audit.stderr

    before = lakes.files(root / "lake", root / "exports")
    missing = (f"dsr: error: policy {small_lake.policy_path}: table 'users' pseudonymises, but the key "
               f"environment variable {KEY_ENV} is not set (set it to a secret of at least 16 bytes, not counting "
               f"white space)")
    for command in ("run", "check", "verify"):
        assert _assert_refused(dsr(command, env=env)) == missing
    short = _assert_refused(dsr("run", env={**env, KEY_ENV: " " * 16}), KEY_ENV, "too short")
    assert short == (f"dsr: error: policy {small_lake.policy_path}: the key in {KEY_ENV} is too short "
                     f"(at least 16 bytes, not counting white space)")
    assert lakes.files(root / "lake", root / "exports") == before

    done = dsr("run", "--json", env={**env, KEY_ENV: KEY})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"].get("completed") == 2


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("request", "erase", "secret\u200bperson"), "subject id: contains an invisible character"),
        (("request", "export", "\u202esecret-person"), "subject id: contains a bidirectional control character"),
        (("request", "erase", "secret-person\udcff"), "subject id: is not valid Unicode"),  # argv bytes b"\xff"
        (("request", "erase", "secret-person\ufeff"), "subject id: contains an invisible character"),
        (("request", "erase", "u1", "--ticket", "T-\u202e1"), "ticket"),
        (("request", "erase", "u1", "--by", "dpo\udcff"), "requested_by"),
    ],
    ids=["zero-width", "bidi-override", "lone-surrogate", "bom", "bidi-ticket", "surrogate-requester"],
)
def test_a_bad_subject_id_or_ticket_on_the_command_line_is_refused_without_echo(
    small_lake: Lake, args: tuple[str, ...], named: str
) -> None:
    root = small_lake.root
    before = lakes.files(root / "lake", root / "exports")

    line = _assert_refused(dsr(*args, env=small_lake.env), named)

    assert "secret" not in line and "person" not in line
    assert lakes.files(root / "lake", root / "exports") == before


def _subparsers() -> dict[str, Any]:
    """Every command's parser, by its words (``audit verify``, ``request erase``...)."""
    import argparse

    from dsr.cli.main import _parser

    found: dict[str, Any] = {}

    def walk(p: Any, words: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[f"{words} {name}".strip()] = sub
                    walk(sub, f"{words} {name}")

    walk(_parser(), "")
    return found


def test_every_json_flag_says_what_it_prints() -> None:
    with_json = {name: p for name, p in _subparsers().items() if "--json" in p._option_string_actions}
    assert {"check", "requests", "run", "verify", "receipt", "residue", "purge", "sweep", "export-link",
            "status"} <= set(with_json)
    for name, p in with_json.items():
        text = p._option_string_actions["--json"].help or ""
        assert "JSON on stdout" in text, (name, text)


def test_export_link_help_and_readme_say_the_ttl_default_is_the_packages_remaining_life() -> None:
    """The synopsis names no value that looks like the default (the default is what is left of the package's
    life, at most 7 days); README's synopsis is the parser's."""
    link = _subparsers()["export-link"]
    usage = " ".join(link.format_usage().split())
    assert "[--ttl DURATION]" in usage and "24h]" not in usage
    helptext = " ".join(link.format_help().split())
    assert "default: what is left of the package's life, at most 7 days" in helptext
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert readme.count("dsr export-link REQUEST_ID [--ttl DURATION] [--for WHO] [--json]") == 2
    assert "--ttl 24h]" not in readme
