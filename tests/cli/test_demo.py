"""The demo generator (``dsr.cli.demo.build_demo_lake``) at a small scale, and the bits of ``dsr demo`` that need
no Airflow run (the Airflow run itself is covered by test_dag_e2e.py)."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dsr.cli.demo import DEMO_MARKER, DemoInfo, build_demo_lake, look_around
from dsr.cli.demoleaks import subject_id_leaks
from dsr.cli.main import main
from dsr.core import control
from dsr.core.policy import check_against_lake, load_policy

KEY = "0123456789abcdef0123456789abcdef"
README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoInfo:
    return build_demo_lake(tmp_path_factory.mktemp("demo") / "d", scale=0.02, key=KEY)


@pytest.fixture
def demo_env(demo: DemoInfo, monkeypatch: pytest.MonkeyPatch) -> DemoInfo:
    for k, v in demo.env.items():
        monkeypatch.setenv(k, v)
    return demo


def _table(demo: DemoInfo, name: str) -> DeltaTable:
    return DeltaTable(os.path.join(demo.lake, name))


def test_it_writes_every_table_of_the_policy_and_the_lookup(demo: DemoInfo) -> None:
    for name in ("users", "events", "orders", "consents", "support_tickets", "geo_lookup"):
        assert _table(demo, name).to_pyarrow_table().num_rows == demo.rows[name] > 0
    assert Path(demo.dir, DEMO_MARKER).is_file()
    assert Path(demo.exports).is_dir()


def test_tables_have_the_documented_types(demo: DemoInfo) -> None:
    users = pa.schema(_table(demo, "users").schema().to_arrow())
    assert users.field("user_id").type == pa.string()
    assert users.field("birth_date").type == pa.date32()
    orders = pa.schema(_table(demo, "orders").schema().to_arrow())
    assert orders.field("amount").type == pa.decimal128(10, 2)
    assert orders.field("ordered_at").type == pa.timestamp("us", tz="UTC")
    tickets = pa.schema(_table(demo, "support_tickets").schema().to_arrow())
    assert tickets.field("customer_no").type == pa.int64()


def test_events_are_partitioned_by_date_with_several_files_per_partition(demo: DemoInfo) -> None:
    events = _table(demo, "events")
    assert events.metadata().partition_columns == ["event_date"]
    per_partition = Counter(os.path.dirname(f) for f in events.file_uris())
    assert len(per_partition) >= 3
    assert min(per_partition.values()) >= 2


def test_data_looks_real_and_is_deterministic_for_a_seed(demo: DemoInfo, tmp_path: Path) -> None:
    users = _table(demo, "users").to_pyarrow_table().sort_by("user_id").to_pylist()
    u = users[0]
    assert u["user_id"] == "u000001"
    assert "@" in u["email"] and " " in u["full_name"]
    assert isinstance(u["birth_date"], dt.date)
    assert all(ip is None or len(ip.split(".")) == 4 for ip in (r["last_ip"] for r in users))
    again = build_demo_lake(tmp_path / "again", scale=0.02, key=KEY, requests=False)
    for name, key in (("users", "user_id"), ("orders", "order_id"), ("events", "event_id")):
        first = _table(demo, name).to_pyarrow_table().sort_by(key)
        second = DeltaTable(os.path.join(again.lake, name)).to_pyarrow_table().select(first.column_names)
        assert second.sort_by(key).to_pylist() == first.to_pylist()


def test_the_policy_passes_dsr_check(demo_env: DemoInfo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    assert "policy OK" in capsys.readouterr().out
    policy = load_policy(demo_env.policy_path)
    check_against_lake(policy)
    assert {t.name: t.erase for t in policy.tables} == {
        "events": "delete", "users": "anonymise", "orders": "anonymise", "consents": "retain",
        "support_tickets": "anonymise", "customers": "delete",
    }
    assert {t.name: t.kind for t in policy.tables} == {
        "events": "user_id", "users": "user_id", "orders": "user_id", "consents": "user_id",
        "support_tickets": "customer_no", "customers": "customer_no",
    }
    assert [link.path for link in policy.identity] == ["users", "customers"]
    assert policy.table("users").never_export == ("password_hash",)
    assert [e.path for e in policy.exempt] == ["geo_lookup"]


def test_requests_are_filed_pending_with_one_subject_in_both_kinds(demo_env: DemoInfo) -> None:
    policy = load_policy(demo_env.policy_path)
    reqs = control.list_requests(policy)
    assert {r.request_id for r in reqs} == {r.request_id for r in demo_env.requests}
    assert all(r.status == "pending" for r in reqs)
    erase, export = set(demo_env.subjects("erase")), set(demo_env.subjects("export"))
    assert len(erase) == 6 and len(export) == 3 and len(erase & export) == 1
    users = set(_table(demo_env, "users").to_pyarrow_table().column("user_id").to_pylist())
    customers = set(_table(demo_env, "support_tickets").to_pyarrow_table().column("customer_no").to_pylist())
    emails = {e.lower() for e in _table(demo_env, "users").to_pyarrow_table().column("email").to_pylist() if e}
    for r in demo_env.requests:
        if r.table_hint == "user_id":
            assert r.subject_id in users
        elif r.table_hint == "email":  # filed as typed (another case); the kind's normalisation finds the user
            assert r.subject_id in emails  # the canonical form; it was typed in another case (DEMO request)
        else:
            assert int(r.subject_id) in customers
    assert [r.table_hint for r in demo_env.requests].count("email") == 1


def test_demo_env_file_sets_policy_and_key(demo: DemoInfo) -> None:
    text = Path(demo.env_path).read_text()
    assert f"export DSR_POLICY={demo.policy_path}" in text
    assert f"export DSR_PSEUDONYM_KEY={KEY}" in text
    assert Path(demo.env_path).stat().st_mode & 0o077 == 0


def test_it_refuses_a_directory_that_already_holds_a_lake(demo: DemoInfo) -> None:
    from dsr.errors import InputError

    with pytest.raises(InputError, match="exists already"):
        build_demo_lake(demo.dir, scale=0.02)


def test_dsr_demo_never_wipes_a_directory_that_is_not_a_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = tmp_path / "precious.txt"
    keep.write_text("do not delete")
    assert main(["demo", "--dir", str(tmp_path)]) == 2
    assert "not a dsr demo directory" in capsys.readouterr().err
    assert keep.read_text() == "do not delete"


def test_leak_check_finds_whole_ids_only() -> None:
    texts = {"log": "at 13:42:09.100008Z ran 2100008 things", "xcom": '["events"]', "bad": "user u000042 left"}
    assert subject_id_leaks(["100008", "u000042"], texts) == ["bad"]
    assert subject_id_leaks(["100008"], {"x": "customer 100008."}) == ["x"]


def test_the_demo_exports_folder_is_private(demo: DemoInfo) -> None:
    """README: local packages are 0600 files in 0700 folders; the demo's exports folder too, whatever the umask."""
    assert stat.S_IMODE(os.stat(demo.exports).st_mode) == 0o700


def _readme_look_around() -> list[list[str]]:
    block = README.split("Afterwards, look around:", 1)[1].split("```", 2)[1]
    return [ln.split("#", 1)[0].split()[1:] for ln in block.splitlines() if ln.startswith(".venv/bin/dsr ")]


def test_the_closing_hint_suggests_commands_that_say_something_after_the_purge(tmp_path: Path) -> None:
    """After the demo's run and purge (its erased ids are digests now), every command the demo's last lines and
    README's "look around" suggest exits 0 and shows something: none is left with nothing to scan."""
    from tests.invoke import dsr

    info = build_demo_lake(tmp_path / "d", scale=0.02, key=KEY)
    for _ in range(3):  # as the DAG's run does: every request processed, then the purge (purge_after_hours: 0)
        assert dsr("run", "-q", env=info.env).returncode == 0
        if not control.list_requests(load_policy(info.policy_path), status="pending"):
            break
    purge = dsr("purge", "-q", env=info.env)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    ids = {r.request_id: "ERASE_ID" if r.kind == "erase" else "EXPORT_ID" for r in info.requests}
    hint = [args for args, _ in look_around(info)]
    assert [[ids.get(a, a) for a in args] for args in hint] == _readme_look_around()
    for args in hint:
        out = dsr(*args, env=info.env)
        assert out.returncode == 0, (args, out.stdout + out.stderr)
        assert out.stdout.strip(), args
        assert not re.search(r"\bnothing to|\bno (completed )?erasures? to", out.stdout), (args, out.stdout)
    erasure = dsr(*hint[1], env=info.env).stdout
    assert re.search(r"purged \d{4}-\d\d-\d\d", erasure) and "residue: 0" in erasure, erasure
    assert "0 row(s) would change" in dsr(*hint[3], env=info.env).stdout
    assert subject_id_leaks(info.subjects("erase") + info.subjects("export"),
                            {" ".join(a): dsr(*a, env=info.env).stdout for a in hint}) == []
