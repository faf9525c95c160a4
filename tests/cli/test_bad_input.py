"""Bad input, case by case: a policy, an id, a CSV, a command line, the environment or a corrupted lake.

Each case asserts: the exit code (2 for bad usage or input; 1 where a check fails), exactly one line on
stderr (no traceback), nothing on stdout that looks like a traceback, no subject id echoed, and no file
under the lake or the exports changed (names and bytes compared before and after).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import textwrap
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from dsr.cli.main import main
from tests import lakes
from tests.invoke import dsr

SECRET_ID = "person-4711"


def _base(root: Path) -> None:
    """The small lake with a subject whose id must never be echoed, one filed request (so the control and audit
    tables exist), and an exports folder."""
    lake = lakes.small(root)
    lakes.write_table(lake.lake / "events", {"user_id": [SECRET_ID], "page": ["/secret"]})
    users = DeltaTable(str(lake.lake / "users")).schema().to_arrow()
    lakes.write_table(lake.lake / "users", {"user_id": [SECRET_ID], "email": ["p@x.org"], "full_name": ["P"],
                                            "birth_date": [None], "last_ip": [None], "password_hash": ["h"]},
                      schema=pa.schema(users))
    lakes.write_table(lake.lake / "consents", {"user_id": [SECRET_ID], "purpose": ["mail"]})
    lake.exports.mkdir()
    os.environ.update(lake.env)
    assert main(["--policy", str(lake.policy_path), "request", "erase", "u9"]) == 0


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input-template")
    saved = dict(os.environ)
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            _base(root)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return root


@dataclass
class Case:
    id: str
    argv: list[str]
    setup: Callable[[Path], None] | None = None
    env: dict[str, str | None] = field(default_factory=dict)
    code: int = 2


def policy(text: str) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        (root / "dsr.yml").write_text(textwrap.dedent(text), encoding="utf-8")
    return write


def patch_policy(old: str, new: str) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        text = (root / "dsr.yml").read_text(encoding="utf-8")
        assert old in text, old
        (root / "dsr.yml").write_text(text.replace(old, new, 1), encoding="utf-8")
    return write


def file(name: str, content: bytes | str) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        (root / name).write_bytes(data)
    return write


def _truncate_last_commit(table: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        log = root / "lake" / table / "_delta_log"
        last = sorted(log.glob("*.json"))[-1]
        last.write_bytes(last.read_bytes()[:40])
    return corrupt


def _remove_a_data_file(table: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        next((root / "lake" / table).glob("*.parquet")).unlink()
    return corrupt


def _add_column(table: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        uri = str(root / "lake" / table)
        data = DeltaTable(uri).to_pyarrow_table()
        data = data.append_column("extra", pa.array(["x"] * data.num_rows))
        write_deltalake(uri, data, mode="overwrite", schema_mode="overwrite")
    return corrupt


def _drop_column(table: str, column: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        uri = str(root / "lake" / table)
        data = DeltaTable(uri).to_pyarrow_table().drop_columns([column])
        write_deltalake(uri, data, mode="overwrite", schema_mode="overwrite")
    return corrupt


def _retype_column(table: str, column: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        uri = str(root / "lake" / table)
        data = DeltaTable(uri).to_pyarrow_table()
        i = data.schema.get_field_index(column)
        data = data.set_column(i, column, data.column(column).cast(pa.int64()))
        write_deltalake(uri, data, mode="overwrite", schema_mode="overwrite")
    return corrupt


def _garbage_checkpoint(table: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        log = root / "lake" / table / "_delta_log"
        version = int(sorted(log.glob("*.json"))[-1].stem)
        (log / f"{version:020d}.checkpoint.parquet").write_bytes(b"PAR1 not really parquet")
        (log / "_last_checkpoint").write_text(json.dumps({"version": version, "size": 3}))
    return corrupt


def _both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def run(root: Path) -> None:
        for step in steps:
            step(root)
    return run


P = ["--policy", "dsr.yml"]
TABLE_HEAD = "lake: ./lake\ntables:\n"
EV = "  - {name: events, path: events, subject: user_id, erase: delete}\n"

POLICY_CASES = [
    Case("policy-missing", ["--policy", "nope.yml", "check"]),
    Case("policy-is-a-directory", ["--policy", "lake", "check"]),
    Case("policy-not-utf8", [*P, "check"], file("dsr.yml", b"lake: ./lake\n\xff\xfe tables: []\n")),
    Case("policy-empty", [*P, "check"], file("dsr.yml", "")),
    Case("policy-yaml-syntax", [*P, "check"], file("dsr.yml", "lake: [./lake\ntables:\n")),
    Case("policy-top-level-list", [*P, "check"], file("dsr.yml", "- lake\n- tables\n")),
    Case("policy-unknown-key", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\nlakes: ./x")),
    Case("policy-duplicate-tables", [*P, "check"], policy(TABLE_HEAD + EV + "tables:\n" + EV)),
    Case("policy-duplicate-erase", [*P, "check"],
         policy(TABLE_HEAD + "  - name: events\n    path: events\n    subject: user_id\n    erase: delete\n"
                "    erase: retain\n")),
    Case("policy-duplicate-mask-key", [*P, "check"],
         patch_policy("      email: nullify\n", "      email: nullify\n      email: {redact: x}\n")),
    Case("policy-no-lake", [*P, "check"], policy("tables:\n" + EV)),
    Case("policy-lake-not-text", [*P, "check"], policy("lake: 3\ntables:\n" + EV)),
    Case("policy-control-absolute", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\ncontrol: /tmp/x")),
    Case("policy-control-escapes", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\ncontrol: ../../x")),
    Case("policy-control-uri", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\ncontrol: s3://b/x")),
    Case("policy-exports-not-text", [*P, "check"], patch_policy("exports: ./exports", "exports: [1]")),
    Case("policy-key-env-empty", [*P, "check"], patch_policy("pseudonym_key_env: DSR_PSEUDONYM_KEY",
                                                             "pseudonym_key_env: ''")),
    Case("policy-export-before-erase-text", [*P, "check"],
         patch_policy("lake: ./lake", "lake: ./lake\nexport_before_erase: maybe")),
    Case("policy-max-attempts-zero", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\nmax_attempts: 0")),
    Case("policy-max-attempts-text", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\nmax_attempts: '3'")),
    Case("policy-max-attempts-bool", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\nmax_attempts: true")),
    Case("policy-claim-ttl-huge", [*P, "check"],
         patch_policy("lake: ./lake", "lake: ./lake\nclaim_ttl_minutes: 1000000000000")),
    Case("policy-due-days-huge", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\ndue_days: 1000000000000")),
    Case("policy-due-days-negative", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\ndue_days: -1")),
    Case("policy-tables-not-list", [*P, "check"], policy("lake: ./lake\ntables: events\n")),
    Case("policy-tables-empty", [*P, "check"], policy("lake: ./lake\ntables: []\n")),
    Case("policy-table-not-mapping", [*P, "check"], policy(TABLE_HEAD + "  - events\n")),
    Case("policy-table-no-name", [*P, "check"], policy(TABLE_HEAD + "  - {path: events, subject: user_id, "
                                                                    "erase: delete}\n")),
    Case("policy-name-absolute-path", [*P, "check"], patch_policy("name: events", "name: /tmp/OUTSIDE")),
    Case("policy-name-dotdot", [*P, "check"], patch_policy("name: events", "name: ../..")),
    Case("policy-name-with-slash", [*P, "check"], patch_policy("name: events", "name: a/b")),
    Case("policy-name-with-space", [*P, "check"], patch_policy("name: events", "name: my events")),
    Case("policy-unknown-table-key", [*P, "check"], patch_policy("    erase: delete", "    erase: delete\n"
                                                                                     "    erasure: now")),
    Case("policy-path-empty", [*P, "check"], patch_policy("path: events", "path: ''")),
    Case("policy-path-escapes-lake", [*P, "check"], patch_policy("path: events", "path: ../outside")),
    Case("policy-path-absolute-outside", [*P, "check"], patch_policy("path: events", "path: /tmp")),
    Case("policy-no-subject", [*P, "check"], patch_policy("    subject: user_id\n    erase: delete",
                                                          "    erase: delete")),
    Case("policy-unknown-strategy", [*P, "check"], patch_policy("erase: delete", "erase: purge")),
    Case("policy-anonymise-without-mask", [*P, "check"],
         policy(TABLE_HEAD + "  - {name: users, path: users, subject: user_id, erase: anonymise}\n")),
    Case("policy-anonymise-subject-unmasked", [*P, "check"],
         patch_policy("      user_id: pseudonymise\n", "")),
    Case("policy-unknown-mask", [*P, "check"], patch_policy("email: nullify", "email: scramble")),
    Case("policy-mask-on-delete-table", [*P, "check"], patch_policy(
        "    erase: delete\n", "    erase: delete\n    mask: {user_id: nullify}\n")),
    Case("policy-redact-not-text", [*P, "check"], patch_policy("email: nullify", "email: {redact: [1]}")),
    Case("policy-retain-without-reason", [*P, "check"],
         patch_policy('    reason: "GDPR Art. 7(1): proof of consent"\n', "")),
    Case("policy-webhook-crlf", [*P, "run"], patch_policy(
        "lake: ./lake", 'lake: ./lake\nnotify: {webhook: "http://127.0.0.1:9/h\\r\\nX-Injected: 1"}')),
    Case("policy-webhook-space", [*P, "run"], patch_policy(
        "lake: ./lake", "lake: ./lake\nnotify: {webhook: 'http://127.0.0.1:9/a b'}")),
    Case("policy-webhook-port-out-of-range", [*P, "run"], patch_policy(
        "lake: ./lake", "lake: ./lake\nnotify: {webhook: 'http://127.0.0.1:99999/h'}")),
    Case("policy-never-export-not-list", [*P, "check"], patch_policy("    erase: delete\n",
                                                                     "    erase: delete\n    never_export: page\n")),
    Case("policy-never-export-subject", [*P, "check"], patch_policy(
        "    erase: delete\n", "    erase: delete\n    never_export: [user_id]\n")),
    Case("policy-export-not-bool", [*P, "check"], patch_policy("    erase: delete\n",
                                                               "    erase: delete\n    export: sometimes\n")),
    Case("policy-duplicate-table-name", [*P, "check"], patch_policy("name: users", "name: events")),
    Case("policy-duplicate-table-path", [*P, "check"], patch_policy("path: consents", "path: events")),
    Case("policy-exempt-not-list", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\nexempt: geo")),
    Case("policy-exempt-no-reason", [*P, "check"], patch_policy("lake: ./lake", "lake: ./lake\nexempt: [{path: geo}]")),
    Case("policy-subject-columns-not-list", [*P, "check"],
         patch_policy("lake: ./lake", "lake: ./lake\nsubject_columns: user_id")),
    Case("policy-mask-column-missing", [*P, "check"], patch_policy("email: nullify", "emial: nullify")),
    Case("policy-subject-column-missing", [*P, "check"], patch_policy("subject: user_id\n    erase: delete",
                                                                      "subject: uid\n    erase: delete")),
    Case("policy-path-not-delta", [*P, "check"], patch_policy("path: events", "path: nowhere")),
    Case("policy-year-on-text", [*P, "check"], patch_policy("email: nullify", "email: year")),
    Case("policy-pseudonymise-on-date", [*P, "check"], patch_policy("birth_date: year", "birth_date: pseudonymise")),
    Case("policy-ipv4-on-date", [*P, "check"], patch_policy("birth_date: year", "birth_date: ipv4_24")),
]

ID_CASES = [
    Case(f"id-{name}", [*P, "request", "erase", value])
    for name, value in [
        ("empty", ""), ("leading-space", " u1"), ("trailing-space", "u1 "), ("too-long", "x" * 257),
        ("control", "u\x01x"), ("newline", "u\nx"), ("tab", "u\tx"), ("nul", "u\x00x"), ("zero-width", "u\u200bx"),
        ("rtl-override", "u\u202ex"), ("bom", "\ufeffu1"), ("only-spaces", "   "), ("line-separator", "u\u2028x"),
        ("lone-surrogate", "u\udcffx"), ("del", "u\x7fx"),
    ]
] + [Case("id-export-zero-width", [*P, "request", "export", "a\u200db"])]

CSV_CASES = [
    Case("csv-missing", [*P, "request", "import", "nope.csv"]),
    Case("csv-directory", [*P, "request", "import", "lake"]),
    Case("csv-empty", [*P, "request", "import", "r.csv"], file("r.csv", "")),
    Case("csv-header-only", [*P, "request", "import", "r.csv"], file("r.csv", "kind,subject_id\n")),
    Case("csv-bad-header", [*P, "request", "import", "r.csv"], file("r.csv", "type,id\nerase,u1\n")),
    Case("csv-duplicate-header", [*P, "request", "import", "r.csv"], file("r.csv", "kind,subject_id,ticket,ticket\n")),
    Case("csv-field-count", [*P, "request", "import", "r.csv"], file("r.csv", "kind,subject_id\nerase,u1,x\n")),
    Case("csv-unknown-kind", [*P, "request", "import", "r.csv"], file("r.csv", "kind,subject_id\nforget,u1\n")),
    Case("csv-bad-id-line-3", [*P, "request", "import", "r.csv"],
         file("r.csv", "kind,subject_id\nerase,u1\nerase, u2\n")),
    Case("csv-not-utf8", [*P, "request", "import", "r.csv"], file("r.csv", b"kind,subject_id\nerase,\xff\n")),
    Case("csv-ticket-too-long", [*P, "request", "import", "r.csv"],
         file("r.csv", "kind,subject_id,ticket\nerase,u1," + "t" * 300 + "\n")),
    Case("csv-ticket-control", [*P, "request", "import", "r.csv"],
         file("r.csv", "kind,subject_id,ticket\nerase,u1,a\x02b\n")),
    Case("csv-zero-width-id", [*P, "request", "import", "r.csv"], file("r.csv", "kind,subject_id\nerase,a\u200bb\n")),
]

CLI_CASES = [
    Case("cli-no-command", P),
    Case("cli-unknown-command", [*P, "forget"]),
    Case("cli-request-no-kind", [*P, "request"]),
    Case("cli-request-no-subject", [*P, "request", "erase"]),
    Case("cli-requests-bad-status", [*P, "requests", "--status", "done"]),
    Case("cli-run-bad-engine", [*P, "run", "--engine", "duckdb"]),
    Case("cli-run-remote-with-delta-rs", [*P, "run", "--engine", "delta-rs", "--remote", "sc://127.0.0.1:1"]),
    Case("cli-run-remote-not-sc", [*P, "run", "--remote", "http://127.0.0.1:1"]),
    Case("cli-run-remote-unreachable", [*P, "run", "--remote", "sc://127.0.0.1:9"]),
    Case("cli-purge-bad-engine", [*P, "purge", "--engine", "duckdb"]),
    Case("cli-purge-remote-with-delta-rs", [*P, "purge", "--engine", "delta-rs", "--remote", "sc://127.0.0.1:1"]),
    Case("cli-purge-remote-unreachable", [*P, "purge", "--remote", "sc://127.0.0.1:9"]),
    Case("cli-sweep-unknown-table", [*P, "sweep", "--table", "nope"]),
    Case("cli-sweep-bad-since", [*P, "sweep", "--since", "last tuesday"]),
    Case("cli-sweep-negative-version", [*P, "sweep", "--since-version", "-1"]),
    Case("cli-sweep-version-not-int", [*P, "sweep", "--since-version", "v3"]),
    Case("cli-sweep-two-baselines", [*P, "sweep", "--full", "--since-version", "2"]),
    Case("cli-receipt-bad-sweep-id", [*P, "receipt", "swp_../../etc"]),
    Case("cli-receipt-unknown-sweep", [*P, "receipt", "swp_0123456789abcdef"]),
    Case("cli-receipt-unknown-id", [*P, "receipt", "req_doesnotexist"]),
    Case("cli-receipt-no-id", [*P, "receipt"]),
    Case("cli-audit-no-verb", [*P, "audit"]),
    Case("cli-check-bad-engine", [*P, "check", "--engine", "pandas"]),
    Case("cli-ticket-control", [*P, "request", "erase", "u1", "--ticket", "a\x03b"]),
    Case("cli-by-too-long", [*P, "request", "erase", "u1", "--by", "w" * 300]),
]

EXPORTS_CASES = [
    Case("exports-is-a-file-run", [*P, "run"], _both(file("notadir", "x"),
                                                     patch_policy("exports: ./exports", "exports: ./notadir"))),
    Case("exports-is-a-file-check", [*P, "check"], _both(file("notadir", "x"),
                                                         patch_policy("exports: ./exports", "exports: ./notadir"))),
    Case("exports-under-a-file", [*P, "run"], _both(file("notadir", "x"),
                                                    patch_policy("exports: ./exports", "exports: ./notadir/sub"))),
    Case("exports-bad-scheme", [*P, "run"], patch_policy("exports: ./exports", "exports: gs://bucket/x")),
    Case("exports-s3-unreachable", [*P, "run"], patch_policy("exports: ./exports", "exports: s3://bucket/x"),
         env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}),
]

ENV_CASES = [
    Case("env-dsr-policy-nowhere", ["check"], env={"DSR_POLICY": "/nonexistent/dsr.yml"}),
    Case("env-key-unset-run", [*P, "run"], env={"DSR_PSEUDONYM_KEY": None}),
    Case("env-key-unset-check", [*P, "check"], env={"DSR_PSEUDONYM_KEY": None}),
    Case("env-key-short", [*P, "run"], env={"DSR_PSEUDONYM_KEY": "short"}),
    Case("env-key-spaces", [*P, "run"], env={"DSR_PSEUDONYM_KEY": " " * 20}),
    Case("env-key-mostly-spaces", [*P, "verify"], env={"DSR_PSEUDONYM_KEY": "abc" + " " * 20}),
    Case("env-bad-engine", [*P, "run"], env={"DSR_ENGINE": "duckdb"}),
    Case("env-bad-spark-server", [*P, "check", "--engine", "spark"], env={"DSR_SPARK_SERVER": "hadoop"}),
    Case("env-s3-unreachable", ["--policy", "s3.yml", "requests"],
         file("s3.yml", "lake: s3://bucket/lake\ntables:\n" + EV),
         env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}),
    Case("env-s3-unreachable-intake", ["--policy", "s3.yml", "request", "erase", "u1"],
         file("s3.yml", "lake: s3://bucket/lake\ntables:\n" + EV),
         env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}),
]

# issue 21, point 9: tracebacks where one line belongs
FTP_LAKE = patch_policy("lake: ./lake", "lake: ftp://host/lake")
REPORT_AND_SCHEME_CASES = [
    Case("report-out-under-a-file", [*P, "report", "--out", "notadir/report"], file("notadir", "x")),
    Case("report-out-under-proc", [*P, "report", "--out", "/proc/dsr-report"]),
    Case("report-out-empty", [*P, "report", "--out", ""]),
    Case("policy-lake-ftp-check", [*P, "check"], FTP_LAKE),
    Case("policy-lake-ftp-requests", [*P, "requests"], FTP_LAKE),
    Case("policy-lake-ftp-intake", [*P, "request", "erase", "u1"], FTP_LAKE),
    Case("policy-lake-ftp-run", [*P, "run"], FTP_LAKE),
    Case("policy-lake-ftp-status", [*P, "status"], FTP_LAKE),
    Case("policy-lake-ftp-audit-verify", [*P, "audit", "verify"], FTP_LAKE),
    Case("policy-lake-gs-requests", [*P, "requests"], patch_policy("lake: ./lake", "lake: gs://bucket/lake")),
    Case("policy-lake-s3-no-bucket", [*P, "requests"], patch_policy("lake: ./lake", "lake: s3:///lake")),
    Case("cli-verify-remote-unreachable", [*P, "verify", "--remote", "sc://127.0.0.1:9"]),
    Case("cli-verify-remote-not-sc", [*P, "verify", "--remote", "http://127.0.0.1:1"]),
    Case("cli-verify-remote-with-delta-rs", [*P, "verify", "--engine", "delta-rs", "--remote", "sc://127.0.0.1:1"]),
    Case("cli-verify-engine-spark-remote-env-unreachable", [*P, "verify", "--engine", "spark"],
         env={"SPARK_REMOTE": "sc://127.0.0.1:9"}),
    Case("policy-exports-ftp-requests", [*P, "requests"], patch_policy("exports: ./exports", "exports: ftp://h/x")),
]

LAKE_CASES = [
    Case("lake-control-log-truncated-requests", [*P, "requests"], _truncate_last_commit("_dsr/requests")),
    Case("lake-control-log-truncated-intake", [*P, "request", "erase", "u1"], _truncate_last_commit("_dsr/requests")),
    Case("lake-control-log-truncated-run", [*P, "run"], _truncate_last_commit("_dsr/requests")),
    Case("lake-audit-log-truncated-intake", [*P, "request", "erase", "u1"], _truncate_last_commit("_dsr/audit")),
    Case("lake-audit-log-truncated-receipt", [*P, "audit", "verify"], _truncate_last_commit("_dsr/audit")),
    Case("lake-control-file-missing", [*P, "requests"], _remove_a_data_file("_dsr/requests")),
    Case("lake-control-file-missing-run", [*P, "run"], _remove_a_data_file("_dsr/requests")),
    Case("lake-audit-file-missing-intake", [*P, "request", "erase", "u1"], _remove_a_data_file("_dsr/audit")),
    Case("lake-control-column-added", [*P, "requests"], _add_column("_dsr/requests")),
    Case("lake-control-column-dropped", [*P, "requests"], _drop_column("_dsr/requests", "ticket")),
    Case("lake-control-column-retyped", [*P, "requests"], _retype_column("_dsr/requests", "attempts")),
    Case("lake-control-column-retyped-run", [*P, "run"], _retype_column("_dsr/requests", "attempts")),
    Case("lake-control-column-added-intake", [*P, "request", "erase", "u1"], _add_column("_dsr/requests")),
    Case("lake-control-checkpoint-garbage", [*P, "requests"], _garbage_checkpoint("_dsr/requests")),
    Case("lake-audit-checkpoint-garbage", [*P, "audit", "verify"], _garbage_checkpoint("_dsr/audit")),
    Case("lake-data-log-truncated-check", [*P, "check"], _truncate_last_commit("events")),
    Case("lake-data-log-truncated-run", [*P, "run"], _both(_truncate_last_commit("events"))),
    Case("lake-data-checkpoint-garbage", [*P, "run"], _garbage_checkpoint("users")),
    Case("lake-data-log-gone", [*P, "run"], lambda root: shutil.rmtree(root / "lake" / "events" / "_delta_log")),
]

# issue 22, item 3: a table named in the Spark catalog (table: instead of path:)
USERS_BY_NAME = patch_policy("    path: users\n", "    table: crm.users\n")
CATALOG_CASES = [
    Case("policy-table-and-path", [*P, "check"], patch_policy("    path: users\n",
                                                              "    path: users\n    table: crm.users\n")),
    Case("policy-table-four-parts", [*P, "requests"], patch_policy("    path: users\n", "    table: a.b.c.d\n")),
    Case("policy-table-empty-part", [*P, "run"], patch_policy("    path: users\n", "    table: crm..users\n")),
    Case("policy-table-space", [*P, "check"], patch_policy("    path: users\n", "    table: 'crm. users'\n")),
    Case("policy-table-quote", [*P, "check"], patch_policy("    path: users\n", "    table: \"crm.'users'\"\n")),
    *(Case(f"catalog-table-{cmd[0]}-default-engine", [*P, *cmd], USERS_BY_NAME)
      for cmd in (["check"], ["run"], ["verify"], ["sweep"], ["purge"], ["residue"])),
    Case("catalog-table-run-engine-delta-rs", [*P, "run", "--engine", "delta-rs"], USERS_BY_NAME),
    Case("catalog-table-run-env-delta-rs", [*P, "run"], USERS_BY_NAME, env={"DSR_ENGINE": "delta-rs"}),
    Case("catalog-table-run-remote-unreachable", [*P, "run", "--remote", "sc://127.0.0.1:9"], USERS_BY_NAME),
    Case("catalog-table-check-remote-unreachable", [*P, "check", "--remote", "sc://127.0.0.1:9"], USERS_BY_NAME),
]

CASES = (POLICY_CASES + ID_CASES + CSV_CASES + CLI_CASES + EXPORTS_CASES + ENV_CASES + LAKE_CASES
         + REPORT_AND_SCHEME_CASES + CATALOG_CASES)


def test_there_are_at_least_a_hundred_cases() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_writes_nothing(
    case: Case, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "w"
    shutil.copytree(template, root)
    monkeypatch.chdir(root)
    monkeypatch.setenv(lakes.KEY_ENV, lakes.KEY)
    for var in ("DSR_POLICY", "DSR_ENGINE", "DSR_SPARK_SERVER", "SPARK_REMOTE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    for k, v in case.env.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    if case.setup is not None:
        case.setup(root)
    before = lakes.files(root / "lake", root / "exports")
    proc = dsr(*case.argv)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == case.code, (proc.returncode, proc.stderr, proc.stdout)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert SECRET_ID not in proc.stdout + proc.stderr
    assert lakes.files(root / "lake", root / "exports") == before
