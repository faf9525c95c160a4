"""A person, not an id (issue 23): a request names one identifier, resolution finds the others through the link
tables, and export, erasure and verification reach every row of the person in every table and column — and no
row of anyone else, such as Bea, whose customer number equals Émile's user id.

Read back independently: :func:`tests.lakes.rows` (delta-rs' DataFusion SQL over the log, not dsr's reader).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.core.masks import pseudonym
from dsr.engines.deltars import DeltaRsEngine
from tests import identity_lake, lakes
from tests.invoke import dsr
from tests.packages import tables as package_tables

KEY = lakes.KEY.encode()


def _others_untouched(lake: lakes.Lake, before: dict[str, list[dict[str, Any]]]) -> None:
    """Every row not Émile's is as it was, value for value (the rows that mention him aside: checked apart)."""
    root = lake.lake

    def keep(table: str, row: dict[str, Any]) -> bool:
        if table in ("users", "events"):
            return bool(row["user_id"] != "77")
        if table == "marketing":
            return bool(row["email"].strip().lower() != identity_lake.A_EMAIL_FORM)
        if table in ("crm_customers", "support_tickets"):
            return bool(row["customer_no"] != 5001)
        return "77" not in (row["sender_id"], row["recipient_id"])

    for table, rows in before.items():
        now = lakes.snapshot(root / table)
        for row in rows:
            if keep(table, row):
                assert row in now, f"{table}: a row of someone else changed or went"


def _check_erased(lake: lakes.Lake) -> None:
    root = lake.lake
    expected = identity_lake.expected_after_erasure()
    assert sorted((r["user_id"] for r in lakes.rows(root / "events")), key=repr) == expected["events"]
    assert sorted(r["email"] for r in lakes.rows(root / "marketing")) == expected["marketing"]
    assert sorted(r["customer_no"] for r in lakes.rows(root / "crm_customers")) == expected["crm_customers"]
    assert sorted((r["customer_no"], r["subject_line"]) for r in lakes.rows(root / "support_tickets")) == \
        expected["support_tickets"]  # Bea's ticket (customer 77) stays
    users = {r["full_name"]: r for r in lakes.rows(root / "users")}
    emile = users["[erased]"]
    assert emile["user_id"] == pseudonym(KEY, "user_id:77", "string") and emile["email"] is None
    assert users["Bea"]["user_id"] == "88"
    messages = sorted((r["sender_id"], r["recipient_id"], r["body"]) for r in lakes.rows(root / "messages"))
    masked = pseudonym(KEY, "user_id:77", "string")
    assert messages == sorted([("88", masked, "hi Émile"), ("99", "88", "hello"), ("88", "99", "hey Cy")])


def _run(policy: Any, engine: Any) -> None:
    report = steps.run(policy, engine)
    assert report.exit_code == 0, report.as_dict()


def test_erasing_a_person_by_email_reaches_every_identifier_and_nobody_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = identity_lake.build(tmp_path).use(monkeypatch)
    policy = lake.policy()
    before = {t.name: lakes.snapshot(lake.lake / t.path) for t in policy.tables}
    # typed as a person types it: case and a trailing space; the kind's normalisation makes it the stored form
    export = dsr("request", "export", "--id", "email=ÉMILE.Durand@example.org ", env=lake.env).stdout.strip()
    erase = dsr("request", "erase", "--id", "email=émile.durand@EXAMPLE.org", env=lake.env).stdout.strip()
    _run(policy, DeltaRsEngine())

    done = {r.request_id: r for r in control.list_requests(policy)}
    assert done[export].status == done[erase].status == "completed", done[erase].error
    resolved = done[erase].resolved
    assert resolved is not None
    assert {(i.kind, i.value) for i in resolved} == {
        ("email", identity_lake.A_EMAIL_FORM), ("user_id", "77"), ("customer_no", "5001")}
    (event,) = [e for e in audit.events(policy, request_id=erase) if e["event"] == "identity_resolved"]
    assert event["details"]["kinds"] == {"customer_no": 1, "email": 1, "user_id": 1}
    assert "77" not in json.dumps(event["details"]) and "durand" not in json.dumps(event["details"]).lower()

    # the export holds every row of Émile's, in every table, found under each kind
    got = package_tables(str(done[export].export_uri))
    counts = {t: len(rows) for t, rows in got.items()}
    assert counts == {"users": 1, "events": 2, "marketing": 2, "crm_customers": 1, "support_tickets": 2,
                      "messages": 3}
    assert all(r["customer_no"] == 5001 for r in got["support_tickets"])

    _check_erased(lake)
    _others_untouched(lake, before)
    # the receipt says, per table and column, what matched under which kind
    erased = {e["table_name"]: e["details"] for e in audit.events(policy, request_id=erase)
              if e["event"] == "table_erased"}
    assert erased["messages"]["columns"]["sender_id"]["rows"] == 2
    # counted when that column's commit ran: the note to self went with the sender's rows
    assert erased["messages"]["columns"]["recipient_id"]["rows"] == 1
    assert erased["messages"]["rows"] == 3
    assert erased["support_tickets"]["columns"]["customer_no"]["kind"] == "customer_no"
    assert erased["support_tickets"]["rows"] == 2
    assert len(erased["messages"]["commits"]) == 2  # one per subject column


def test_the_same_erasure_on_spark_reads_on_the_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      spark_connect: Any) -> None:
    """On the Spark engine (Sail): resolution, the normalised variants, export and erasure read on the cluster;
    the result, read back by delta-rs, is the same."""
    from dsr.engines.spark import SparkEngine

    lake = identity_lake.build(tmp_path).use(monkeypatch)
    policy = lake.policy()
    before = {t.name: lakes.snapshot(lake.lake / t.path) for t in policy.tables}
    export, _ = control.submit(policy, "export", ids=["email=" + identity_lake.A_EMAIL.upper()])
    erase, _ = control.submit(policy, "erase", ids=["email=" + identity_lake.A_EMAIL])
    engine = SparkEngine(spark_connect)
    jobs_before = engine.reader.jobs
    _run(policy, engine)
    assert engine.reader.jobs > jobs_before
    done = {r.request_id: r for r in control.list_requests(policy)}
    assert done[export].status == done[erase].status == "completed", (done[export].error, done[erase].error)
    got = package_tables(str(done[export].export_uri))
    assert {t: len(rows) for t, rows in got.items()} == {"users": 1, "events": 2, "marketing": 2,
                                                         "crm_customers": 1, "support_tickets": 2, "messages": 3}
    _check_erased(lake)
    _others_untouched(lake, before)
    for statement in engine.statements:  # identifiers travel as data, never in the SQL text the engine built
        assert not any(v in statement.lower() for v in ("'77'", " 77 ", "5001", "durand"))


def test_a_value_of_one_kind_never_matches_a_column_of_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """Erasing user 77 (without link tables to widen it) leaves customer 77's ticket alone."""
    lake = identity_lake.build(tmp_path, _NO_LINKS).use(monkeypatch)
    policy = lake.policy()
    control.submit(policy, "erase", ids=["user_id=77"])
    _run(policy, DeltaRsEngine())
    tickets = sorted(r["customer_no"] for r in lakes.rows(lake.lake / "support_tickets"))
    assert tickets == [77, 5001, 5001, 9001]
    assert sorted(r["customer_no"] for r in lakes.rows(lake.lake / "crm_customers")) == [77, 5001, 9001]
    assert "77" not in [r["user_id"] for r in lakes.rows(lake.lake / "events")]


def test_the_fan_out_guard_fails_the_request_for_review_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = identity_lake.build(tmp_path, identity_lake.POLICY + "identity_max_ids: 2\n").use(monkeypatch)
    policy = lake.policy()
    before = {t.name: lakes.snapshot(lake.lake / t.path) for t in policy.tables}
    versions = {t.name: lakes.version(lake.lake / t.path) for t in policy.tables}
    rid, _ = control.submit(policy, "erase", ids=["email=" + identity_lake.A_EMAIL])
    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 1
    (r,) = control.list_requests(policy, ids=[rid])
    assert r.status == "failed" and r.attempts == policy.max_attempts  # for review: not retried
    assert r.error is not None and "identity_max_ids 2" in r.error and "customer_no 1" in r.error
    assert "77" not in r.error and "durand" not in r.error.lower() and "5001" not in r.error
    assert {t.name: lakes.snapshot(lake.lake / t.path) for t in policy.tables} == before
    assert {t.name: lakes.version(lake.lake / t.path) for t in policy.tables} == versions
    # the next run does not take it again
    assert steps.run(policy, DeltaRsEngine()).claimed["requests"] == 0


def test_a_resolved_set_is_frozen_with_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry erases exactly the set resolved at the first claim, even when the link tables changed since."""
    lake = identity_lake.build(tmp_path).use(monkeypatch)
    policy = lake.policy()
    rid, _ = control.submit(policy, "erase", ids=["user_id=77"])
    run_id = control.new_run_id()
    steps.claim_batch(policy, run_id)
    steps.call(steps.STEPS[0], policy, run_id, DeltaRsEngine())
    first = control.list_requests(policy, ids=[rid])[0].resolved
    lakes.write_table(lake.lake / "users", {"user_id": ["77"], "email": ["other@example.org"], "full_name": ["x"]})
    steps.call(steps.STEPS[0], policy, run_id, DeltaRsEngine())
    assert control.list_requests(policy, ids=[rid])[0].resolved == first
    assert first is not None and {i.kind for i in first} == {"user_id", "email", "customer_no"}


@pytest.mark.parametrize("bad", ["phone=123", "customer_no=12a", "email=", "customer_no=99999999999999999999"])
def test_bad_identifiers_are_one_line_exit_2_never_echoed(tmp_path: Path, bad: str) -> None:
    lake = identity_lake.build(tmp_path)
    out = dsr("request", "erase", "--id", bad, env=lake.env)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    value = bad.partition("=")[2]
    if value:
        assert value not in out.stderr
    assert not (lake.lake / "_dsr" / "requests").exists()


def _other_unicode(steps: tuple[str, ...], batches: Any) -> Any:
    """A cluster whose pyarrow folds case differently: upper case instead of lower."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for batch in batches:
        values = batch.column(0)
        yield pa.RecordBatch.from_arrays([values, pc.utf8_upper(values)], names=["v", "__dsr_form"])


_NO_LINKS = identity_lake.POLICY.split("identity:")[0] + "tables:" + identity_lake.POLICY.split("tables:")[1]


@pytest.mark.parametrize(("policy_text", "named"), [
    (identity_lake.POLICY, "identity resolution: identifier kind 'email'"),
    (_NO_LINKS, "subject column 'email', identifier kind 'email'"),
], ids=["resolution", "tables"])
def test_a_cluster_that_normalises_otherwise_is_refused_for_that_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spark_connect: Any, policy_text: str, named: str
) -> None:
    """The probe strings normalised on the cluster must equal this process's result; else resolution through a
    link table with that kind, and every table with a subject column of that kind, are refused (final, nothing
    written), naming the kind (and the column)."""
    from dsr.engines import spark_reads
    from dsr.engines.spark import SparkEngine

    assert SparkEngine(spark_connect).reader.reproduces(("trim", "lower", "nfkc")) is None
    monkeypatch.setattr(spark_reads, "_canonical", _other_unicode)
    lake = identity_lake.build(tmp_path, policy_text).use(monkeypatch)
    policy = lake.policy()
    versions = {t.name: lakes.version(lake.lake / t.path) for t in policy.tables}
    rid, _ = control.submit(policy, "erase", ids=["user_id=77"])
    report = steps.run(policy, SparkEngine(spark_connect))
    assert report.exit_code == 1
    (r,) = control.list_requests(policy, ids=[rid])
    assert r.status == "failed" and r.attempts == policy.max_attempts and r.error is not None
    assert named in r.error and "probe strings" in r.error
    assert lakes.version(lake.lake / "marketing") == versions["marketing"]


def test_a_run_that_dies_between_the_commits_of_a_table_records_both_on_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """messages takes two commits (sender, then recipient). A run killed after the first: the retry commits the
    second, and the request's event names both (reconciled, verified, and purged later as one erasure)."""
    from dsr.engines.base import CommitResult

    lake = identity_lake.build(tmp_path).use(monkeypatch)
    policy = lake.policy()
    rid, _ = control.submit(policy, "erase", ids=["user_id=77"])
    engine = DeltaRsEngine()
    real = engine.erase
    calls: list[str] = []

    def dies_after_the_first(plan: Any, source: Any) -> CommitResult:
        if plan.uri.endswith("messages") and calls:
            raise KeyboardInterrupt("killed")  # not an Exception: nothing of the step's own handling runs
        if plan.uri.endswith("messages"):
            calls.append(plan.subject)
        return real(plan, source)

    monkeypatch.setattr(engine, "erase", dies_after_the_first)
    run_id = control.new_run_id()
    steps.claim_batch(policy, run_id)
    for step in steps.STEPS[:4]:  # resolve, export, finish_exports, erase
        for table in ([t.name for t in policy.tables] if step.per_table else [None]):
            if table == "messages" and step.name == "erase":
                with pytest.raises(KeyboardInterrupt):
                    steps.call(step, policy, run_id, engine, table)
            else:
                steps.call(step, policy, run_id, engine, table)
    assert calls == ["sender_id"] and lakes.version(lake.lake / "messages") == 1
    monkeypatch.setattr(engine, "erase", real)
    steps.call(steps.STEPS[3], policy, run_id, engine, "messages")  # the retry of that task
    (event,) = [e["details"] for e in audit.events(policy, request_id=rid)
                if e["event"] == "table_erased" and e["table_name"] == "messages"]
    assert [(c["column"], c["version_before"], c["version_after"]) for c in event["commits"]] == [
        ("sender_id", 0, 1), ("recipient_id", 1, 2)]
    assert (event["version_before"], event["version_after"]) == (0, 2)
    assert event["columns"]["sender_id"]["rows"] == 2 and event["columns"]["recipient_id"]["rows"] == 1
    for step in steps.STEPS[4:]:
        for table in ([t.name for t in policy.tables] if step.per_table else [None]):
            steps.call(step, policy, run_id, engine, table)
    (r,) = control.list_requests(policy, ids=[rid])
    assert r.status == "completed", r.error
    _check_erased(lake)


def _engine(kind: str, request: pytest.FixtureRequest) -> Any:
    if kind == "delta-rs":
        return DeltaRsEngine()
    from dsr.engines.spark import SparkEngine

    return SparkEngine(request.getfixturevalue("spark_connect"))


@pytest.mark.parametrize("engine_kind", ["delta-rs", "sail"])
def test_sweep_purge_and_residue_follow_every_identifier_of_the_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, engine_kind: str
) -> None:
    """After Émile's erasure by email, an ingestion job brings back rows of his under each kind (his email in yet
    another case) and rows of Bea's (customer 77): the sweep takes his, leaves hers; the purge leaves no raw
    identifier of his in the control table and no byte of any of them in the tables' files (old versions too);
    Bea's rows are as they were."""
    import dataclasses

    from dsr.core.identifiers import Identifier, identities_json
    from dsr.steps import purge as purging
    from dsr.steps.sweep import sweep
    from dsr.steps.sweep_state import new_sweep_id
    from dsr.verify import residue

    lake = identity_lake.build(tmp_path, identity_lake.POLICY + "purge_after_hours: 0\n").use(monkeypatch)
    policy = lake.policy()
    engine = _engine(engine_kind, request)
    rid, _ = control.submit(policy, "erase", ids=["email=" + identity_lake.A_EMAIL])
    _run(policy, engine)
    root = lake.lake
    lakes.write_table(root / "events", {"user_id": ["77", "88"], "page": ["/late", "/late"]})
    lakes.write_table(root / "marketing", {"email": [" émile.DURAND@example.ORG", "bea@example.org"],
                                           "campaign": ["late", "late"]})
    import pyarrow as pa

    lakes.write_table(root / "support_tickets", {"customer_no": pa.array([5001, 77], pa.int64()),
                                                 "subject_line": ["late", "late"]})
    lakes.write_table(root / "messages", {"sender_id": ["77", "88"], "recipient_id": ["99", "77"],
                                          "body": ["late a", "late b"]})
    before = {t.name: lakes.snapshot(root / t.path) for t in policy.tables}

    report = sweep(policy, engine, new_sweep_id())
    assert report.exit_code == 0, report.as_dict()
    assert [r["user_id"] for r in lakes.rows(root / "events") if r["page"] == "/late"] == ["88"]
    assert [r["email"] for r in lakes.rows(root / "marketing") if r["campaign"] == "late"] == ["bea@example.org"]
    assert [r["customer_no"] for r in lakes.rows(root / "support_tickets") if r["subject_line"] == "late"] == [77]
    masked = pseudonym(KEY, "user_id:77", "string")
    assert sorted((r["sender_id"], r["recipient_id"]) for r in lakes.rows(root / "messages")
                  if r["body"].startswith("late")) == [("88", masked)]
    _others_untouched(lake, before)

    report = purging.purge(policy, engine=engine) if engine_kind != "delta-rs" else purging.purge(policy)
    assert report.exit_code == 0, report.as_dict()
    (r,) = control.list_requests(policy, ids=[rid])
    assert r.minimised
    stored = f"{r.subject_id} {r.identities}"
    assert not any(v in stored.lower() for v in ("durand", '"77"', "5001"))
    # the residue scan with every identifier he had (as the demo does): nothing anywhere
    known = (Identifier("email", identity_lake.A_EMAIL_FORM), Identifier("user_id", "77"),
             Identifier("customer_no", "5001"))
    probe = dataclasses.replace(r, subject_id=known[0].value, id_kind="email",
                                identities=identities_json(known[:1], known))
    (found,) = residue.scan(policy, [probe])
    assert found.total() == 0, found.as_dict()
    for path in root.rglob("*.parquet"):
        data = path.read_bytes().lower()  # ASCII letters lowered: É and é stay as they are
        for variant in ("émile.durand", "Émile.durand"):  # (emile.durand@, without the accent, is someone else)
            assert variant.encode() not in data, path  # no case variant of his email in any file, old or live
    assert lakes.snapshot(root / "support_tickets") == sorted(
        [{"customer_no": 77, "subject_line": "login"}, {"customer_no": 9001, "subject_line": "other"},
         {"customer_no": 77, "subject_line": "late"}], key=lambda x: repr(sorted(x.items())))


def test_the_cool_down_after_an_export_follows_the_person_not_the_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export filed by user id, then an erasure filed by email: the same person (the export's resolved set
    holds the email), so the erasure cools down. Kinds never cross: a completed export of customer 77 holds back
    an erasure of customer 77, not one of user 77."""
    import datetime as dt

    from dsr.core.cooldown import erase_waits

    lake = identity_lake.build(tmp_path, identity_lake.POLICY + "erase_cooldown_days: 7\n").use(monkeypatch)
    policy = lake.policy()
    control.submit(policy, "export", ids=["user_id=77"])
    _run(policy, DeltaRsEngine())
    rid, _ = control.submit(policy, "erase", ids=["email=" + identity_lake.A_EMAIL.upper()])
    report = steps.run(policy, DeltaRsEngine())
    assert report.claimed["requests"] == 0 and report.claimed["cooling_down"] == 1
    (r,) = control.list_requests(policy, ids=[rid])
    assert r.status == "pending"
    # by kind: a completed export of customer 77 holds back an erasure of customer 77, never one of user 77
    now = dt.datetime.now(dt.UTC)
    export = dataclasses.replace(r, request_id="req_e", kind="export", status="completed", updated_at=now,
                                 subject_id="77", id_kind="customer_no", identities=None)
    user = dataclasses.replace(r, request_id="req_u", subject_id="77", id_kind="user_id", identities=None)
    customer = dataclasses.replace(r, request_id="req_c", subject_id="77", id_kind="customer_no", identities=None)
    assert set(erase_waits([export, user, customer], 7, now)) == {"req_c"}
