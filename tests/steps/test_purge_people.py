"""Purge and residue with identifier kinds (issue 23): every subject column searched with its kind's keys, a
normalised kind in canonical form (a case variant in an old file is found), every identifier minimised.

The people lake (``tests/lakes.py``): person 1 (user 77, ``jane@example.org``, customer 1234) is erased, rows of
both people come back and are swept, then purged. Person 2 (customer 77) has an export of their own. The proof is
read with plain pyarrow and json (``tests/bytescan.py``), never with dsr's residue scan, which is what it checks.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.core.policy import Policy
from dsr.engines.deltars import DeltaRsEngine
from dsr.steps import purge as purging
from dsr.steps.sweep import sweep
from dsr.steps.sweep_state import new_sweep_id
from dsr.verify import residue
from tests import bytescan, lakes

EMAILS = {"Jane@Example.ORG ", " JANE@example.org ", "jane@example.org", "\tJane@EXAMPLE.org"}
"""Every spelling of person 1's email the lake ever held (the last in a file no version references)."""
PERSON_1 = {"events": ({"user_id"}, {"77"}), "contacts": ({"email"}, EMAILS),
            "tickets": ({"customer_no"}, {1234}), "messages": ({"sender_id", "recipient_id"}, {"77"})}
"""Where person 1 is: table -> (subject columns, values)."""


def _person_2(lake: lakes.Lake) -> dict[str, list[str]]:
    """Person 2's rows in every table (user 88, bob@example.org, customer 77), as sorted reprs."""
    rows = {t: lakes.rows(lake.lake / t) for t in PERSON_1}
    return {
        "events": sorted(repr(r) for r in rows["events"] if r["user_id"] == "88"),
        "contacts": sorted(repr(r) for r in rows["contacts"] if r["email"] == "bob@example.org"),
        "tickets": sorted(repr(r) for r in rows["tickets"] if r["customer_no"] == 77),
        "messages": sorted(repr(r) for r in rows["messages"] if r["sender_id"] == "88"),
    }


def _in_files(table: Path, columns: set[str], match: Any) -> int:
    """Rows of every parquet data file under the table (referenced or not) whose column value ``match`` accepts."""
    n = 0
    for f in table.rglob("*.parquet"):
        if "_delta_log" in f.parts:
            continue
        data = pq.read_table(f)
        for c in columns & set(data.column_names):
            n += sum(1 for v in data.column(c).to_pylist() if v is not None and match(v))
    return n


@pytest.fixture
def swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Person 1 erased (and person 2's export done) by a run, new rows of both appended and swept; not purged."""
    lake = lakes.people(tmp_path / "w")
    lake.policy_path.write_text(lake.policy_path.read_text() + "purge_after_hours: 0\n", encoding="utf-8")
    policy = lake.use(monkeypatch).policy()
    rid, _ = control.submit(policy, "erase", ids=list(lakes.PERSON_1))
    export, _ = control.submit(policy, "export", ids=["customer_no=77"])
    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 0, report.as_dict()
    lakes.write_people_rows(lake.lake, lakes.people_rows("new", jane_email=" JANE@example.org "))
    assert sweep(policy, DeltaRsEngine(), new_sweep_id()).exit_code == 0
    leftover = pa.table({"email": ["\tJane@EXAMPLE.org", "bob@example.org"], "full_name": ["x", "y"]})
    pq.write_table(leftover, lake.lake / "contacts" / "part-00000-leftover-of-a-failed-writer.parquet")
    return {"lake": lake, "policy": policy, "rid": rid, "export": export, "person_2": _person_2(lake)}


def _erasure(policy: Policy, rid: str) -> control.Request:
    return next(r for r in control.list_requests(policy, ids=[rid]))


def test_residue_finds_person_1_in_every_column_of_its_kind_a_case_variant_included(swept: dict[str, Any]) -> None:
    lake, policy = swept["lake"], swept["policy"]
    (found,) = residue.scan(policy, [_erasure(policy, swept["rid"])])
    data = {t: c["data files"] for t, c in found.tables.items() if isinstance(c, dict)}
    assert data == {
        "events": _in_files(lake.lake / "events", {"user_id"}, lambda v: v == "77"),
        "contacts": _in_files(lake.lake / "contacts", {"email"}, lambda v: v.strip().lower() == "jane@example.org"),
        "tickets": _in_files(lake.lake / "tickets", {"customer_no"}, lambda v: v == 1234),  # not person 2's 77
        "messages": _in_files(lake.lake / "messages", {"sender_id", "recipient_id"}, lambda v: v == "77"),
    }
    assert _in_files(lake.lake / "contacts", {"email"}, lambda v: v == "Jane@Example.ORG ") == 1  # in an old file
    assert _in_files(lake.lake / "contacts", {"email"}, lambda v: v == "\tJane@EXAMPLE.org") == 1  # unreferenced
    assert all(n > 0 for n in data.values())
    assert found.own["control table"] > 0  # the request names the person until the purge


def test_after_the_purge_nothing_of_person_1_is_on_disk_and_person_2_is_untouched(swept: dict[str, Any]) -> None:
    lake, policy = swept["lake"], swept["policy"]
    report = purging.purge(policy)
    assert report.exit_code == 0, report.as_dict()
    assert {t.table for t in report.tables} == set(PERSON_1)
    for name, (columns, values) in PERSON_1.items():
        assert bytescan.column_places(lake.lake / name, columns, values) == Counter(), name
    assert bytescan.column_places(lake.lake / "tickets", {"customer_no"}, {77})["data"] == 2  # person 2's
    assert _person_2(lake) == swept["person_2"]
    assert bytescan.scan([lake.lake, lake.exports], ["jane@example.org", "JANE@example.org", "Jane@Example.ORG"]) \
        == Counter()
    scans = [e["details"] for e in audit.events(policy, request_id=swept["rid"]) if e["event"] == "residue_scanned"]
    assert scans[-1]["total"] == 0 and set(scans[-1]["tables"]) == set(PERSON_1)


def test_the_control_table_keeps_no_raw_identifier_of_person_1_and_person_2s_request_as_it_was(
    swept: dict[str, Any],
) -> None:
    policy = swept["policy"]
    assert purging.purge(policy).exit_code == 0
    erased = _erasure(policy, swept["rid"])
    assert erased.subject_id.startswith("sbj_") and erased.id_kind == "user_id"
    listed = json.loads(erased.identities or "{}")["given"]
    assert [k for k, _ in listed] == ["user_id", "email", "customer_no"]
    assert all(v.startswith("sbj_") for _, v in listed)
    cells = [str(v) for f in Path(policy.requests_uri).rglob("*.parquet") if "_delta_log" not in f.parts
             for row in pq.read_table(f).to_pylist() for v in row.values() if v is not None]
    texts = " ".join(cells)
    assert "jane@example.org" not in texts.lower() and "1234" not in texts
    other = _erasure(policy, swept["export"])
    assert (other.subject_id, other.id_kind) == ("77", "customer_no")  # another person's 77: not minimised
    assert cells.count("77") == 1


def test_a_purged_erasure_is_still_swept(swept: dict[str, Any]) -> None:
    """The suppression list re-applies the erasure after the purge minimised every identifier."""
    lake, policy = swept["lake"], swept["policy"]
    assert purging.purge(policy).exit_code == 0
    lakes.write_people_rows(lake.lake, lakes.people_rows("late", jane_email="JANE@EXAMPLE.ORG"))
    report = sweep(policy, DeltaRsEngine(), new_sweep_id())
    assert {t.table: t.rows for t in report.tables} == {"events": 2, "contacts": 2, "tickets": 2, "messages": 2}
    assert report.exit_code == 0


@pytest.mark.spark
def test_on_sail_residue_and_purge_read_the_files_on_the_cluster_with_the_same_counts(
    swept: dict[str, Any], spark_connect: Any,
) -> None:
    """The residue scan's rows read on the cluster (each column's values normalised there for the email kind)
    count what the in-process scan counts; the purge's search of unreferenced files on the cluster finds the
    leftover file holding a spelling of the email, and removes it."""
    from dsr.engines.spark import SparkEngine

    lake, policy = swept["lake"], swept["policy"]
    erasure = _erasure(policy, swept["rid"])
    with SparkEngine(spark_connect) as engine:
        (on_cluster,) = residue.scan(policy, [erasure], reader=engine.reader)
        (here,) = residue.scan(policy, [erasure])
        assert on_cluster.as_dict() == here.as_dict()
        assert on_cluster.tables["contacts"]["data files"] > 0  # type: ignore[index]
        report = purging.purge(policy, engine=engine)
    assert report.exit_code == 0, report.as_dict()
    for name, (columns, values) in PERSON_1.items():
        assert bytescan.column_places(lake.lake / name, columns, values) == Counter(), name
    assert _person_2(lake) == swept["person_2"]
