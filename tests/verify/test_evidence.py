"""``dsr.verify.evidence``: the files' own account of a table verified on a cluster reader (a Sail server here),
and ``dsr_files_agree`` in ``check_table`` and in a run driven step by step.

The evidence must pass on what is right (the subject as a partition column, deletion vectors Sail wrote, an older
deletion vector masking an erased key still in its file, a table whose log has no statistics) and fail on what a
writer or Spark's own Delta reader gets wrong: an erased row left in a live file while Spark's reader does not
return it. Faults are injected by hand (a file appended or rewritten behind the writer's back, Spark's Delta read
filtered), each described where it is made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.core.policy import Policy, load_policy
from dsr.delta import access, commits, plainfiles
from dsr.engines.spark_reads import SparkReader
from dsr.errors import VerificationError
from dsr.verify import evidence
from dsr.verify.checks import check_table
from tests import lakes
from tests import real_tables as rt
from tests import spark_tables as st

pytestmark = [pytest.mark.spark]

GONE = ["gone-5e1", "gone 7/%=b"]
KEPT = ["kept-0a1", "kept-x%41", "kept-9c2"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lakes.KEY_ENV, lakes.KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    monkeypatch.delenv("DSR_SPARK_SERVER", raising=False)


@pytest.fixture
def engine(spark_connect: Any) -> Any:
    from dsr.engines.spark import SparkEngine

    return SparkEngine(spark_connect)


def _policy(root: Path, subject: str = "user_id", strategy: str = "delete") -> Policy:
    return load_policy(lakes.write_policy(root, f"lake: ./lake\nexports: ./exports\ntables:\n  - name: t\n"
                                                f"    path: t\n    subject: {subject}\n    erase: {strategy}\n"))


def _keys(values: list[Any], arrow_type: Any = None) -> Any:
    return pa.array(values, arrow_type or pa.string())


def _files_agree(suites: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [s for s in suites if s["suite"] == "dsr_files_agree"]
    return found


def _hidden_by_spark(monkeypatch: pytest.MonkeyPatch, column: str, hidden: list[Any], arrow_type: Any,
                     since: int = 0) -> None:
    """Fault: from version ``since`` on, Spark's Delta reader leaves out the rows whose ``column`` is among
    ``hidden`` (a left-anti join with a key frame): it reports them gone, whatever the files hold."""
    real = SparkReader._table

    def filtered(self: SparkReader, uri: str, version: int | None = None) -> Any:
        frame = real(self, uri, version)
        if version is not None and version < since:
            return frame
        keys = self._key_frame(hidden, arrow_type)
        return frame.join(keys, frame[f"`{column}`"] == keys["__dsr_key"], "left_anti")

    monkeypatch.setattr(SparkReader, "_table", filtered)


# --- the subject as a partition column: the log's partition values are the evidence ------------------------------


def test_a_partition_column_subject_is_judged_by_the_log_s_partition_values(engine: Any, tmp_path: Path) -> None:
    uri = str(tmp_path / "lake" / "t")
    people = [*GONE, *KEPT]
    for i in range(2):
        lakes.write_table(uri, {"user_id": people, "n": [10 * i + k for k in range(len(people))]},
                          partition_by=["user_id"])
    info = access.table_info(uri)
    jobs = engine.reader.jobs
    before = evidence.gather(engine.reader, uri, "user_id", info, _keys(GONE), [])
    assert engine.reader.jobs == jobs  # no file read: the log says it all
    assert (before.hits, before.rows, before.non_null_low, before.non_null_high) == (4, 10, 10, 10)
    assert before.files_cluster == 0 and "partition values are the evidence" in before.note
    # a value that only URL-decodes to an erased id is somebody else
    assert evidence.gather(engine.reader, uri, "user_id", info, _keys(["kept-xA"]), []).hits == 0

    policy = _policy(tmp_path)
    for sid in GONE:
        control.submit(policy, "erase", sid)
    report = steps.run(policy, engine)
    assert report.exit_code == 0, report.as_dict()
    assert len(engine.statements) == 1  # Sail's MERGE erased
    info = access.table_info(uri)
    after = evidence.gather(engine.reader, uri, "user_id", info, _keys(GONE), [info.version])
    assert (after.hits, after.rows, after.non_null_low, after.non_null_high) == (0, 6, 6, 6)
    rid = control.list_requests(policy)[0].request_id
    suites = [s for e in audit.events(policy, request_id=rid) if e["event"] == "verified"
              for s in e["details"]["suites"]]
    assert _files_agree(suites)["success"], suites


# --- deletion vectors --------------------------------------------------------------------------------------------


def _dv_table(tmp_path: Path) -> tuple[Policy, str]:
    """log-replay-dv-key-cases: one file of ids 0..49, an older deletion vector masking 0, 7 and 14."""
    case = rt.case_for(rt.VENDORED / "log-replay-dv-key-cases")
    assert case is not None
    policy = load_policy(lakes.around(tmp_path, case, "delete").policy_path)
    return policy, policy.tables[0].uri


def test_deletion_vectors_sail_writes_are_applied_to_the_files_the_erase_marked(engine: Any, tmp_path: Path) -> None:
    policy, uri = _dv_table(tmp_path)
    (path,) = commits.live_files(uri, access.table_info(uri).version)
    before = access.table_info(uri).version
    result = engine.erase(*st.plan_and_source(engine, uri, ["1", "2"], {}, erase="delete", subject="id"))
    assert result.version_after == before + 1
    assert commits.commit_actions(uri, result.version_after).dv_marked == 1  # Sail marked, did not rewrite
    # the erased rows are still in the file: only its new deletion vector hides them
    vectors = plainfiles.deletion_vectors(uri, result.version_after)
    assert plainfiles.file_pass(uri, [path], "id", pa.int64(), _keys([1, 2], pa.int64())).hits == 2
    assert plainfiles.file_pass(uri, [path], "id", pa.int64(), _keys([1, 2], pa.int64()), vectors).hits == 0

    info = access.table_info(uri)
    found = evidence.gather(engine.reader, uri, "id", info, _keys([1, 2], pa.int64()), [result.version_after])
    assert (found.hits, found.rows, found.files_here, found.files_cluster) == (0, 45, 1, 0)
    check = check_table(policy, policy.tables[0], ["1", "2"], [{
        "version_before": before, "version_after": result.version_after, "rows_deleted": result.rows_deleted}],
        engine.reader)
    assert check.success, check.as_dict()
    assert _files_agree(check.suites)["success"] and "1 added by the erase read in this process" in " ".join(
        check.notes)


def test_an_older_deletion_vector_masking_an_erased_key_still_in_its_file_passes(engine: Any, tmp_path: Path) -> None:
    """Id 7 is in the file, masked by a deletion vector no run of ours wrote: read on the cluster the file holds
    it, so it is read again here with its vector, and nothing is left. Id 8 (live) is a hit."""
    policy, uri = _dv_table(tmp_path)
    info = access.table_info(uri)
    masked = evidence.gather(engine.reader, uri, "id", info, _keys([7], pa.int64()), [])
    assert (masked.hits, masked.rows, masked.files_here) == (0, 47, 0)
    assert "older deletion vectors held erased keys: read in this process" in masked.note
    check = check_table(policy, policy.tables[0], ["7"], [], engine.reader)
    assert check.success and _files_agree(check.suites)["success"], check.as_dict()

    live = evidence.gather(engine.reader, uri, "id", info, _keys([7, 8], pa.int64()), [])
    assert (live.hits, live.rows) == (1, 47)
    failed = check_table(policy, policy.tables[0], ["8"], [], engine.reader)
    assert not failed.success and not _files_agree(failed.suites)["success"]
    assert "expect_column_values_to_be_between[hits_in_files]" in _files_agree(failed.suites)["failed_expectations"]


# --- a log without statistics --------------------------------------------------------------------------------------


def _strip_stats(uri: str) -> None:
    """Remove every ``stats`` of the log's add actions: a writer that keeps none (allowed by the protocol)."""
    for log in sorted((Path(uri) / "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        for a in actions:
            if "add" in a:
                a["add"].pop("stats", None)
        log.write_text("".join(json.dumps(a) + "\n" for a in actions))


def test_a_table_without_statistics_neither_fails_spuriously_nor_misses_a_hit(
    engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "lake" / "t")
    for i in range(3):
        lakes.write_table(uri, {"user_id": [*GONE, KEPT[i], None], "n": [i] * 4})
    _strip_stats(uri)
    assert commits.column_stats(uri, "user_id").records is None
    policy = _policy(tmp_path)
    for sid in GONE:
        control.submit(policy, "erase", sid)
    report = steps.run(policy, engine)
    assert report.exit_code == 0, report.as_dict()
    info = access.table_info(uri)
    found = evidence.gather(engine.reader, uri, "user_id", info, _keys(GONE), [info.version])
    assert found.hits == 0 and found.rows == 6
    rid = control.list_requests(policy)[0].request_id
    verified = [s for e in audit.events(policy, request_id=rid) if e["event"] == "verified"
                for s in e["details"]["suites"]]
    assert _files_agree(verified)["success"], verified

    # a file without statistics holding an erased id, which Spark's reader does not return: caught by the files
    lakes.write_table(uri, {"user_id": [GONE[0], KEPT[0]], "n": [9, 9]})
    _strip_stats(uri)
    _hidden_by_spark(monkeypatch, "user_id", GONE, pa.string())
    check = check_table(policy, policy.tables[0], GONE, [], engine.reader)
    assert {s["suite"] for s in check.suites if not s["success"]} == {"dsr_files_agree"}, check.as_dict()
    assert "expect_column_values_to_be_between[hits_in_files]" in _files_agree(check.suites)["failed_expectations"]


# --- a writer's bug: an erased row left in a live file, which Spark's reader does not return -------------------------


def _drive(policy: Policy, engine: Any, *, until: str) -> str:
    """The claim, then every step of ``STEPS`` up to and including ``until``; returns the run id."""
    batch = steps.claim_batch(policy)
    for step in steps.STEPS:
        for table in batch[step.per_table] if step.per_table else [None]:
            steps.call(step, policy, batch["run_id"], engine, table)
        if step.name == until:
            break
    return str(batch["run_id"])


def _verify_fails(policy: Policy, engine: Any, run_id: str) -> dict[str, Any]:
    verify = next(s for s in steps.STEPS if s.name == "verify")
    with pytest.raises(VerificationError, match="dsr_files_agree"):
        steps.call(verify, policy, run_id, engine, "t")
    rid = next(r.request_id for r in control.list_requests(policy) if r.kind == "erase")
    (event,) = [e for e in audit.events(policy, request_id=rid) if e["event"] == "verified"]
    assert event["details"]["success"] is False
    # Spark's reader was fooled: every suite that reads through it passes; only the files' evidence fails
    assert [s["suite"] for s in event["details"]["suites"] if not s["success"]] == ["dsr_files_agree"], event
    return _files_agree(event["details"]["suites"])


@pytest.mark.parametrize("where", ["appended", "in the erase's own file"])
def test_an_erased_row_left_in_a_live_file_fails_dsr_files_agree(
    engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """After Sail's erase commit and before verification, a live file gets an erased row back — appended by a
    stray writer, or in the very file the erase commit added (a writer that rewrote the file and kept the row) —
    while Spark's Delta reader is made to leave that row out. Every suite that trusts Spark's reader passes;
    the files delta-rs lists, read as plain Parquet, hold the row."""
    uri = str(tmp_path / "lake" / "t")
    schema = pa.schema([pa.field("user_id", pa.string()), pa.field("n", pa.int64())])
    for i in range(3):
        lakes.write_table(uri, pa.table({"user_id": [GONE[0], KEPT[i], KEPT[(i + 1) % 3]], "n": [i] * 3},
                                        schema=schema))
    policy = _policy(tmp_path)
    control.submit(policy, "erase", GONE[0])
    run_id = _drive(policy, engine, until="erase")
    info = access.table_info(uri)
    assert info.version == 3 and not [r for r in lakes.rows(uri) if r["user_id"] == GONE[0]]
    if where == "appended":
        lakes.write_table(uri, pa.table({"user_id": [GONE[0], KEPT[0]], "n": [7, 7]}, schema=schema))
    else:
        added = [p for p, _ in commits.commit_actions(uri, info.version).adds]
        assert added
        target = Path(uri) / added[0]
        kept = pq.read_table(target)
        pq.write_table(pa.concat_tables([kept, pa.table({"user_id": [GONE[0]], "n": [7]}, schema=kept.schema)]),
                       target)
        # the log names the file's true size (a reader fetches the footer by it); its statistics stay the writer's
        log = Path(uri) / "_delta_log" / f"{info.version:020d}.json"
        actions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        for a in actions:
            if "add" in a and a["add"]["path"] == added[0]:
                a["add"]["size"] = target.stat().st_size
        log.write_text("".join(json.dumps(a) + "\n" for a in actions))
    assert [r for r in lakes.rows(uri) if r["user_id"] == GONE[0]]  # every other reader sees it
    _hidden_by_spark(monkeypatch, "user_id", [GONE[0]], pa.string(), since=info.version)  # after the erase
    assert engine.reader.count_rows(uri, where_in=("user_id", _keys([GONE[0]]))) == 0  # Spark's says it's gone
    assert engine.reader.count_rows(uri, info.version - 1, where_in=("user_id", _keys([GONE[0]]))) == 3

    agree = _verify_fails(policy, engine, run_id)
    assert "expect_column_values_to_be_between[hits_in_files]" in agree["failed_expectations"], agree
