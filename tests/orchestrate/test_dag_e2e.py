"""``airflow dags test dsr_process`` end to end on a small generated demo lake.

Airflow runs in a subprocess on a throw-away AIRFLOW_HOME (SQLite, `airflow db migrate` first), so its
configuration never leaks into this process. Asserts the invariants `dsr run` keeps (no erased id survives,
other rows unchanged value for value, masks applied, exports exact, every request completed) and that no
subject id reaches Airflow: its output (task logs), the files under AIRFLOW_HOME and the XCom table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dsr.cli.demo import DemoInfo, build_demo_lake
from tests import expect
from tests.leaks import Leaks
from tests.orchestrate.airflow_cli import airflow
from tests.packages import manifest
from tests.packages import tables as package_tables

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

KEY = "e2e-test-pseudonym-key-0123456789"
DAGS = Path(__file__).resolve().parents[2] / "dags"
TABLES = ("users", "events", "orders", "consents", "support_tickets", "customers", "geo_lookup")


@dataclass
class Run:
    """The demo lake's first DAG run. ``after`` and ``requests`` are taken as that run left them: later tests
    file and process more requests on the same lake, so the tests of the first run read these, never the live
    tables, and pass in any order."""

    demo: DemoInfo
    home: Path
    before: dict[str, pa.Table]
    returncode: int
    output: str
    after: dict[str, pa.Table]
    requests: list[Any]


def _read(demo: DemoInfo, name: str) -> pa.Table:
    return DeltaTable(os.path.join(demo.lake, name)).to_pyarrow_table()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("dag_e2e")
    demo = build_demo_lake(root / "demo", scale=0.02, key=KEY)
    before = {name: _read(demo, name) for name in TABLES}
    home = root / "airflow_home"
    home.mkdir()
    env = _env_for(home, demo)
    migrate = airflow(["db", "migrate"], env, timeout=120)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    test = airflow(["dags", "test", "dsr_process"], env, timeout=300)
    from dsr.core import control

    return Run(demo, home, before, test.returncode, test.stdout + test.stderr,
               after={name: _read(demo, name) for name in TABLES}, requests=control.list_requests(_load_policy(demo)))


def _env_for(home: Path, demo: DemoInfo) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DSR_", "SPARK_REMOTE"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "DSR_ENGINE": "delta-rs",
        **demo.env,
    })
    return env


def _env(run: Run) -> dict[str, str]:
    return _env_for(run.home, run.demo)


def _policy(run: Run) -> Any:
    return _load_policy(run.demo)


def _load_policy(demo: DemoInfo) -> Any:
    from dsr.core.policy import load_policy

    old = os.environ.get("DSR_PSEUDONYM_KEY")
    os.environ["DSR_PSEUDONYM_KEY"] = KEY
    try:
        return load_policy(demo.policy_path)
    finally:
        if old is None:
            del os.environ["DSR_PSEUDONYM_KEY"]
        else:
            os.environ["DSR_PSEUDONYM_KEY"] = old


def _rows(table: pa.Table) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r.values()) for r in table.to_pylist())


def _erased(run: Run, table: pa.Table, column: str, kind: str) -> set[Any]:
    """The values of the erased people's identifiers of ``kind`` (a kind matches only its own columns)."""
    ctype = table.schema.field(column).type
    return {v for v in (_as_column_value(s, ctype) for s in run.demo.identifiers("erase", kind)) if v is not None}


def _as_column_value(subject_id: str, ctype: pa.DataType) -> Any:
    """The value a subject id has in a text or integer column (None: it cannot be one), worked out here."""
    if pa.types.is_integer(ctype):
        return int(subject_id) if subject_id.isascii() and subject_id.isdigit() else None
    return subject_id


def test_the_dag_run_succeeds(run: Run) -> None:
    assert run.returncode == 0, run.output[-5000:]
    assert "DagRun Finished" in run.output and "state=success" in run.output


def test_every_request_completed(run: Run) -> None:
    reqs = run.requests
    assert len(reqs) == len(run.demo.requests) == 9
    assert {r.request_id: r.status for r in reqs} == {r.request_id: "completed" for r in run.demo.requests}


def test_no_erased_id_survives_and_other_rows_are_unchanged(run: Run) -> None:
    policy = _policy(run)
    for spec in policy.tables:
        before, after = run.before[spec.name], run.after[spec.name].select(run.before[spec.name].column_names)
        if spec.erase == "retain":
            assert _rows(after) == _rows(before), spec.name
            continue
        erased = _erased(run, before, spec.subject, spec.kind)
        assert not erased & set(after.column(spec.subject).to_pylist()), spec.name
        keep_before = [r for r in before.to_pylist() if r[spec.subject] not in erased]
        hit_before = [r for r in before.to_pylist() if r[spec.subject] in erased]
        if spec.erase == "delete":
            assert _rows(after) == Counter(tuple(r.values()) for r in keep_before), spec.name
            assert after.num_rows == before.num_rows - len(hit_before)
            continue
        # anonymise: other subjects' rows untouched, the erased rows masked in place
        ctype = before.schema.field(spec.subject).type
        kind = expect.form(ctype)
        assert kind is not None
        psn = {expect.pseudonym(KEY.encode(), f"{spec.kind}:{s}", kind)
               for s in run.demo.identifiers("erase", spec.kind)}
        masked_after = [r for r in after.to_pylist() if r[spec.subject] in psn]
        other_after = [r for r in after.to_pylist() if r[spec.subject] not in psn]
        assert Counter(tuple(r.values()) for r in other_after) == Counter(tuple(r.values()) for r in keep_before)
        assert Counter(tuple(r.values()) for r in masked_after) == Counter(
            tuple(_masked(spec, r, before.schema).values()) for r in hit_before
        ), spec.name


def _masked(spec: Any, row: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """The expected anonymised row, written out by hand from the demo policy."""
    out = dict(row)
    subject = str(row[spec.subject])
    for col, mask in spec.masks:
        v = row[col]
        if mask.strategy == "pseudonymise":
            kind = expect.form(schema.field(col).type)
            assert kind is not None
            out[col] = expect.pseudonym(KEY.encode(), f"{spec.kind}:{subject}", kind)
        elif mask.strategy == "nullify":
            out[col] = None
        elif mask.strategy == "redact":
            out[col] = mask.value
        elif mask.strategy == "year":
            out[col] = None if v is None else dt.date(v.year, 1, 1)
        elif mask.strategy == "ipv4_24":
            out[col] = None if v is None else v.rsplit(".", 1)[0] + ".0"
        else:
            raise AssertionError(f"mask {mask.strategy} not in the demo policy")
    return out


def test_exports_hold_exactly_each_subjects_rows_minus_never_export(run: Run) -> None:
    policy = _policy(run)
    by_id = {r.request_id: r for r in run.requests}
    exports = [r for r in run.demo.requests if r.kind == "export"]
    assert len(exports) == 3
    erased = set(run.demo.subjects("erase"))
    from dsr.core import audit

    formats: list[str] = []
    for req in exports:
        uri = by_id[req.request_id].export_uri
        assert uri and Path(uri).name == f"{req.request_id}.zip"
        if req.subject_id in erased:  # also erased: the DAG's purge task deleted the copy with the erasure
            assert not Path(uri).exists()
            assert [e["details"]["why"] for e in audit.events(policy, request_id=req.request_id)
                    if e["event"] == "export_deleted"] == ["erased"]
            continue
        m = manifest(uri)
        formats.append(m["format"])
        assert m["request_id"] == req.request_id and m["subject_id"] == req.subject_id
        doc = {"tables": package_tables(uri)}
        assert set(doc["tables"]) == {t.name for t in policy.tables if t.export}
        for spec in policy.tables:
            before = run.before[spec.name]
            value = _as_column_value(req.subject_id, before.schema.field(spec.subject).type) \
                if spec.kind == req.table_hint else None  # the exports name user ids: other kinds hold nothing
            cols = [c for c in before.column_names if c not in spec.never_export]
            mine = [r for r in before.to_pylist() if value is not None and r[spec.subject] == value]
            expected = [{c: r[c] for c in cols} for r in mine]
            found = doc["tables"][spec.name]
            assert all(_found_by(r) == [{"column": spec.subject, "kind": spec.kind}] for r in found), spec.name
            got = [_from_json({k: v for k, v in r.items() if k != "_found_by"}, before.schema) for r in found]
            assert all(set(r) == set(cols) for r in got), spec.name
            key = lambda r: json.dumps(r, sort_keys=True, default=str)  # noqa: E731
            assert sorted(got, key=key) == sorted(expected, key=key), spec.name
    assert sorted(formats) == ["csv", "json"]  # the demo's first export is CSV; the one also erased is gone
    assert Leaks(run.demo.subjects("export")).in_file_names(run.demo.exports) == []


def _found_by(row: dict[str, Any]) -> Any:
    """A row's ``_found_by`` (JSON in a document; in a CSV file, ``column:kind`` pairs joined by ``;``)."""
    value = row.get("_found_by")
    if isinstance(value, str):
        return [dict(zip(("column", "kind"), pair.split(":", 1), strict=True)) for pair in value.split(";")]
    return value


def _from_json(row: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col, v in row.items():
        t = schema.field(col).type
        if v is None:
            out[col] = None
        elif pa.types.is_timestamp(t):
            out[col] = dt.datetime.fromisoformat(v)
        elif pa.types.is_date32(t):
            out[col] = dt.date.fromisoformat(v)
        elif pa.types.is_decimal(t):
            out[col] = Decimal(v)
        elif pa.types.is_integer(t):  # a CSV cell is text
            out[col] = int(v)
        else:
            out[col] = v
    return out


def test_no_subject_id_in_airflow_output_logs_or_xcom(run: Run) -> None:
    # whole ids only: a customer number must not be "found" inside a timestamp's microseconds
    leaks = Leaks(run.demo.values("erase") + run.demo.values("export"))
    assert "verified: OK" in run.output  # the task logs are in the output we check
    assert leaks.found_in(run.output) == []
    assert leaks.in_file_contents(run.home, skip=("airflow.db",)) == []
    with sqlite3.connect(run.home / "airflow.db") as con:
        xcom = con.execute("SELECT task_id, map_index, key, CAST(value AS TEXT) FROM xcom").fetchall()
    assert {row[0] for row in xcom} >= {"claim", "export", "erase", "verify"}
    assert leaks.in_texts({f"{task}[{index}].{key}": str(value) for task, index, key, value in xcom}) == []


def test_mapped_instances_are_named_by_their_table(run: Run) -> None:
    """One instance per table of the batch for each step that fans out, labelled with the table in the UI
    (map_index_template); the demo exports and erases in all five policy tables, so none is skipped."""
    with sqlite3.connect(run.home / "airflow.db") as con:
        first = con.execute("SELECT run_id FROM dag_run WHERE dag_id = 'dsr_process' ORDER BY id LIMIT 1").fetchone()
        rows = con.execute("SELECT task_id, rendered_map_index, state FROM task_instance "
                           "WHERE run_id = ? AND map_index >= 0", first).fetchall()
    policy_tables = {"users", "events", "orders", "consents", "support_tickets", "customers"}  # geo_lookup: exempt
    assert sorted(rows) == sorted((step, t, "success") for step in ("export", "erase", "verify") for t in policy_tables)


def test_a_second_run_with_nothing_pending_skips_the_work_and_changes_nothing(run: Run) -> None:
    content = {name: _rows(_read(run.demo, name)) for name in TABLES}
    env = _env(run)
    again = airflow(["dags", "test", "dsr_process"], env, timeout=300)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-5000:]
    assert "no pending requests" in out
    assert "state=success" in out
    # no row changed (its purge task may remove old versions of erasures other tests completed)
    assert {name: _rows(_read(run.demo, name)) for name in TABLES} == content


def test_a_run_that_fails_leaves_requests_for_the_next_run_which_completes_them(run: Run) -> None:
    from dsr.core import control

    policy = _policy(run)
    taken = set(run.demo.identifiers("erase", "user_id"))
    subject = next(u for u in _read(run.demo, "events").column("user_id").to_pylist() if u and u not in taken)
    rid, created = control.submit(policy, "erase", ids=[f"user_id={subject}"], ticket="E2E-RETRY")
    assert created
    env = _env(run)
    pattern = re.compile(r"(?<![\w.])" + re.escape(subject) + r"(?!\w)")

    # as if the workers died after the claim: the per-table steps are marked success without running, so
    # complete (all_done) must fail the request with a reason, and fail the DAG run
    skip = "^(export|finish_exports|erase|verify)$"
    failed = airflow(["dags", "test", "dsr_process", "--mark-success-pattern", skip], env, timeout=300)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0
    (req,) = control.list_requests(policy, ids=[rid])
    assert (req.status, req.attempts) == ("failed", 1)
    assert req.error and "not erased" in req.error
    assert subject in _read(run.demo, "events").column("user_id").to_pylist()

    # the next run (here `dsr run`, the same steps without Airflow, to keep this test short) completes it
    again = subprocess.run(
        [sys.executable, "-m", "dsr.cli", "run", "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    out += again.stdout + again.stderr
    assert again.returncode == 0, out[-5000:]
    (req,) = control.list_requests(policy, ids=[rid])
    assert (req.status, req.attempts) == ("completed", 2)
    for spec in policy.tables:
        if spec.erase != "retain" and spec.kind == "user_id":
            assert subject not in _read(run.demo, spec.name).column(spec.subject).to_pylist(), spec.name
    assert not pattern.search(out)


def test_a_batch_of_exports_only_skips_erase_and_verify_and_completes(run: Run) -> None:
    """The fan-out steps are mapped over the batch's tables; with exports only, every erase and verify
    instance has nothing to do and is skipped, and complete still settles the request."""
    from dsr.core import control

    policy = _policy(run)
    subject = next(iter(run.demo.subjects("export")))
    rid, created = control.submit(policy, "export", ids=[f"user_id={subject}"], ticket="E2E-EXPORT-ONLY")
    assert created
    content = {name: _rows(_read(run.demo, name)) for name in TABLES}
    done = airflow(["dags", "test", "dsr_process"], _env(run), timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    (req,) = control.list_requests(policy, ids=[rid])
    assert req.status == "completed"
    with sqlite3.connect(run.home / "airflow.db") as con:
        rows = con.execute("SELECT task_id, rendered_map_index, state FROM task_instance WHERE run_id = "
                           "(SELECT run_id FROM task_instance WHERE task_id = 'claim' AND state = 'success' "
                           " ORDER BY start_date DESC LIMIT 1)").fetchall()
    states = {(task, label): state for task, label, state in rows}
    assert {s for (task, _), s in states.items() if task in ("erase", "verify")} == {"skipped"}
    assert {s for (task, _), s in states.items() if task == "export"} == {"success"}
    assert states[("finish_exports", None)] == states[("complete", None)] == "success"
    # no row changed (the purge task may have removed old versions of erasures other tests completed)
    assert {name: _rows(_read(run.demo, name)) for name in TABLES} == content


def test_the_purge_task_left_no_file_of_an_erased_person(run: Run) -> None:
    """The demo policy purges at once (purge_after_hours: 0): after the DAG run, no parquet file under a purged
    table holds an erased subject, and the control table keeps digests, not the ids."""
    import pyarrow.parquet as pq

    from dsr.core import audit

    policy = _policy(run)
    erasures = [r for r in run.demo.requests if r.kind == "erase"]
    for r in erasures:
        events = audit.events(policy, request_id=r.request_id)
        purged = {e["table_name"] for e in events if e["event"] == "table_purged"}
        assert purged == {t.name for t in policy.tables if t.erase != "retain"}, r.request_id
    for spec in policy.tables:
        if spec.erase == "retain":
            continue
        erased = {str(v) for v in _erased(run, run.before[spec.name], spec.subject, spec.kind)}
        for f in Path(run.demo.lake, spec.path).rglob("*.parquet"):
            if "_delta_log" in f.parts or spec.subject not in pq.read_schema(f).names:
                continue
            values = {str(v) for v in pq.read_table(f, columns=[spec.subject]).column(0).to_pylist()}
            assert not values & erased, (spec.name, f.name)
    assert not {r.subject_id for r in run.requests if r.kind == "erase"} & set(run.demo.values("erase"))
    assert not any(v in (r.identities or "") for r in run.requests for v in run.demo.values("erase"))


def test_rows_of_an_erased_person_appended_later_are_swept_by_the_next_run(run: Run) -> None:
    """An ingestion job replays events of a person erased (and purged: the control table keeps only a digest)
    in the first run; the next DAG run's sweep task erases them again, reading only the new file."""
    from deltalake import write_deltalake

    events = _read(run.demo, "events")
    erased = sorted(_erased(run, events, "user_id", "user_id"))
    template = events.slice(0, 2).to_pylist()
    late = [{**template[0], "user_id": erased[0]}, {**template[1], "user_id": template[1]["user_id"]}]
    write_deltalake(os.path.join(run.demo.lake, "events"), pa.Table.from_pylist(late, schema=events.schema),
                    mode="append")
    done = airflow(["dags", "test", "dsr_process"], _env(run), timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    assert erased[0] not in set(_read(run.demo, "events").column("user_id").to_pylist())
    assert Counter(_read(run.demo, "events").column("user_id").to_pylist())[template[1]["user_id"]] == \
        Counter(events.column("user_id").to_pylist())[template[1]["user_id"]] + 1
    with sqlite3.connect(run.home / "airflow.db") as con:
        (state,) = con.execute("SELECT state FROM task_instance WHERE task_id = 'sweep' ORDER BY start_date DESC "
                               "LIMIT 1").fetchone()
    assert state == "success"
    assert not re.search(r"(?<![\w.])" + re.escape(str(erased[0])) + r"(?!\w)", out)
