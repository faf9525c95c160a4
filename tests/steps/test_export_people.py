"""Export packages of a person known by identifier kinds (schema_version 2), end to end on real tables: the
person's identifiers are listed, every row says by which subject columns it was found, a row that holds the
person in two columns comes once, in json and csv alike; the ``table_exported`` events count rows per column.

Expected rows come from ``tests/lakes.py``'s ``MESSAGES``, never from dsr.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests.leaks import Leaks
from tests.packages import document, manifest, members, tables

SENDER = {"column": "sender_id", "kind": "user_id"}
RECIPIENT = {"column": "recipient_id", "kind": "user_id"}
EMAIL = {"column": "email", "kind": "email"}


def _found_by(sender: str | None, recipient: str | None, uid: str) -> list[dict[str, str]]:
    return [c for c, v in ((SENDER, sender), (RECIPIENT, recipient)) if v == uid]


def _messages_of(uid: str) -> list[dict[str, Any]]:
    """The messages rows that hold uid, each with the ``_found_by`` it must carry, in msg_id order."""
    return [{"msg_id": m, "sender_id": s, "recipient_id": r, "body": b, "_found_by": _found_by(s, r, uid)}
            for m, s, r, b in lakes.MESSAGES if uid in (s, r)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run of two exports: u1 by user id only (json), and u1 by email and user id (csv)."""
    lake = lakes.messages_lake(tmp_path_factory.mktemp("people") / "w")
    with pytest.MonkeyPatch.context() as mp:
        policy = lake.use(mp).policy()
        by_uid = control.submit(policy, "export", ids=["user_id=u1"])[0]
        by_both = control.submit(policy, "export", ids=["email= Ann@Example.ORG", "user_id=u1"],
                                 export_format="csv")[0]
        report = steps.run(policy, DeltaRsEngine())
        assert report.exit_code == 0, report.as_dict()
        yield {"lake": lake, "policy": policy, "by_uid": by_uid, "by_both": by_both,
               "requests": {r.request_id: r for r in control.list_requests(policy)}}


def test_the_document_lists_the_identifiers_and_says_how_each_row_was_found(exported: dict[str, Any]) -> None:
    req = exported["requests"][exported["by_uid"]]
    assert req.status == "completed", req.error
    doc = document(req.export_uri)
    assert doc["schema_version"] == 2 and doc["request_id"] == req.request_id
    assert doc["subject_id"] == "u1"  # kept for readers of version 1
    assert doc["identifiers"] == [{"kind": "user_id", "value": "u1"}]
    rows = sorted(doc["tables"]["messages"], key=lambda r: r["msg_id"])
    assert rows == _messages_of("u1")
    # the message u1 sent to themself: once, found by both columns
    assert [r["_found_by"] for r in rows if r["msg_id"] == 1] == [[SENDER, RECIPIENT]]
    assert doc["tables"]["contacts"] == []  # no email given (and no resolution): an email never matches a user id
    m = manifest(req.export_uri)
    assert m["schema_version"] == 2 and m["identifiers"] == doc["identifiers"] and m["subject_id"] == "u1"
    assert {t["name"]: t["rows"] for t in m["tables"]} == {"messages": 3, "contacts": 0}
    assert "_found_by" in members(req.export_uri)["README.txt"].decode("utf-8")


def test_a_csv_package_has_a_found_by_column_and_lists_every_identifier(exported: dict[str, Any]) -> None:
    req = exported["requests"][exported["by_both"]]
    assert req.status == "completed", req.error
    m = manifest(req.export_uri)
    assert m["schema_version"] == 2 and m["format"] == "csv"
    # as filed, normalised; the first one filed is the subject id
    assert m["identifiers"] == [{"kind": "email", "value": "ann@example.org"}, {"kind": "user_id", "value": "u1"}]
    got = tables(req.export_uri)
    header = members(req.export_uri)["messages.csv"].decode("utf-8").splitlines()[0]
    assert header == "msg_id,sender_id,recipient_id,body,_found_by"
    want = {r["msg_id"]: ";".join(f"{c['column']}:{c['kind']}" for c in r["_found_by"]) for r in _messages_of("u1")}
    assert {int(r["msg_id"]): r["_found_by"] for r in got["messages"]} == want
    assert want[1] == "sender_id:user_id;recipient_id:user_id"
    # the email in mixed case with a trailing blank is found through the kind's normalisation
    assert got["contacts"] == [{"email": "Ann@Example.org ", "opt_in": "true", "_found_by": "email:email"}]


def test_table_exported_events_count_rows_per_subject_column(exported: dict[str, Any]) -> None:
    events = audit.events(exported["policy"], request_id=exported["by_both"])
    details = {e["table_name"]: e["details"] for e in events if e["event"] == "table_exported"}
    # a row found by both columns counts under each: 2 + 2 for 3 rows exported
    assert details["messages"]["rows"] == 3
    assert details["messages"]["columns"] == {
        "sender_id": {"kind": "user_id", "rows": 2, "matchable": True},
        "recipient_id": {"kind": "user_id", "rows": 2, "matchable": True},
    }
    assert details["contacts"]["columns"] == {"email": {"kind": "email", "rows": 1, "matchable": True}}


def test_no_identifier_in_file_names_or_the_audit_log(exported: dict[str, Any]) -> None:
    policy = exported["policy"]
    leaks = Leaks(["u1", "ann@example.org", "Ann@Example.org"])
    assert leaks.in_file_names(policy.exports) == []
    text = json.dumps([e["details"] for e in audit.events(policy)], default=str)
    assert leaks.found_in(text) == []


def test_a_table_with_its_own_found_by_column_is_refused_for_export(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    lakes.write_table(tmp_path / "lake" / "events", {"user_id": ["u1"], "_found_by": ["theirs"]})
    lakes.write_policy(tmp_path, """\
        lake: ./lake
        exports: ./exports
        tables:
          - {name: events, path: events, subject: user_id, erase: delete}
        """)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    policy = lakes.Lake(tmp_path, tmp_path / "dsr.yml").policy()
    rid = control.submit(policy, "export", "u1")[0]
    steps.run(policy, DeltaRsEngine())
    req = control.list_requests(policy, ids=[rid])[0]
    assert req.status == "failed" and req.export_uri is None
    assert "_found_by" in str(req.error) and "never_export" in str(req.error) and "u1" not in str(req.error)
    assert not list((tmp_path / "exports").glob("*.zip"))
