"""dsr/core/policy_identity.py: ``identifiers``, ``identity`` and a table's subject columns (``subject`` + ``kind``
or ``subjects``) parse into the model, and every mistake is one clear line (exit 2 through the command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsr.core.identifiers import IMPLICIT, Identifier, parse_kind_value
from dsr.core.policy import check_against_lake, load_policy
from dsr.errors import InputError, PolicyError
from tests import identity_lake
from tests.invoke import dsr


def _policy(tmp_path: Path, text: str = identity_lake.POLICY) -> Path:
    identity_lake.build(tmp_path)
    path = tmp_path / "dsr.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_identity_keys_parse_into_kinds_links_and_subject_columns(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path))
    assert [(k.name, k.type, k.normalise) for k in policy.identifiers] == [
        ("user_id", "string", ()), ("email", "string", ("trim", "lower")), ("customer_no", "integer", ())]
    assert [(link.path, link.columns) for link in policy.identity] == [
        ("users", (("user_id", "user_id"), ("email", "email"))),
        ("crm_customers", (("customer_no", "customer_no"), ("email", "email")))]
    messages = policy.table("messages")
    assert [(c.column, c.kind, c.role) for c in messages.subject_columns] == [
        ("sender_id", "user_id", "owner"), ("recipient_id", "user_id", "mentioned")]
    assert messages.subject == "sender_id"
    views = messages.views()
    assert [(v.subject, v.erase.value, v.mask_map) for v in views][1][:2] == ("recipient_id", "anonymise")
    assert policy.table("support_tickets").kind == "customer_no"
    assert policy.identity_max_ids == 50 and policy.identity_max_depth == 3
    check_against_lake(policy, key=False)


def test_a_policy_without_identifiers_has_one_implicit_kind(small_lake: object) -> None:
    from tests.lakes import Lake

    assert isinstance(small_lake, Lake)
    policy = small_lake.policy()
    assert list(policy.kinds) == [IMPLICIT] and not policy.typed
    assert all(c.kind == IMPLICIT for t in policy.tables for c in t.subject_columns)
    assert parse_kind_value("a=b", policy.kinds) == Identifier(IMPLICIT, "a=b")  # a plain id may hold '='


BAD = {
    "unknown kind on a table": (("kind: customer_no, erase: delete}\n  - name: messages",
                                 "kind: phone, erase: delete}\n  - name: messages"), ["'support_tickets'", "'phone'"]),
    "kind missing where identifiers are declared": (("subject: user_id, kind: user_id, erase: delete}",
                                                     "subject: user_id, erase: delete}"), ["'events'", "'kind'"]),
    "unknown normalisation": (("normalise: [trim, lower]", "normalise: [trim, casefold]"), ["'email'", "'casefold'"]),
    "normalising an integer": (("customer_no: {type: integer}", "customer_no: {type: integer, normalise: [trim]}"),
                               ["'customer_no'", "text"]),
    "unknown type": (("user_id: {type: string}", "user_id: {type: uuid}"), ["'user_id'", "'uuid'"]),
    "link to an unknown kind": (("columns: {user_id: user_id, email: email}",
                                 "columns: {user_id: user_id, email: mail}"), ["'users'", "'mail'"]),
    "a link of one column": (("columns: {user_id: user_id, email: email}", "columns: {user_id: user_id}"),
                             ["'users'", "at least two"]),
    "a mention that does not mask its column": (("mask: {recipient_id: pseudonymise}", "mask: {body: nullify}"),
                                                ["'recipient_id'", "mask the column itself"]),
    "an unknown role": (("role: mentioned", "role: cc"), ["'recipient_id'", "'cc'"]),
    "subject and subjects at once": (("    erase: delete\n    subjects:",
                                      "    erase: delete\n    subject: x\n    subjects:"), ["'messages'", "not both"]),
    "the reserved kind name": (("  customer_no: {type: integer}\n", "  customer_no: {type: integer}\n  subject: {}\n"),
                               ["'subject'", "reserved"]),
    "a cap of zero": (("tables:\n", "identity_max_ids: 0\ntables:\n"), ["identity_max_ids"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_identity_mistakes_are_one_line_naming_the_key(tmp_path: Path, case: str) -> None:
    (old, new), names = BAD[case]
    assert old in identity_lake.POLICY
    path = _policy(tmp_path, identity_lake.POLICY.replace(old, new, 1))
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    message = str(err.value)
    assert "\n" not in message
    for n in names:
        assert n in message, message


@pytest.mark.parametrize(("change", "names"), [
    (("{path: users, columns: {user_id: user_id, email: email}}",
      "{path: users, columns: {user_id: user_id, mail: email}}"),
     ["identity table 'users'", "'mail'", "not found"]),
    (("{name: support_tickets, path: support_tickets, subject: customer_no, kind: customer_no",
      "{name: support_tickets, path: support_tickets, subject: subject_line, kind: customer_no"),
     ["'support_tickets'", "'subject_line'", "integer"]),
    (("{path: crm_customers, columns:", "{path: nowhere, columns:"), ["identity table 'nowhere'", "not a Delta table"]),
])
def test_dsr_check_refuses_kinds_that_do_not_fit_the_columns(tmp_path: Path, change: tuple[str, str],
                                                           names: list[str]) -> None:
    path = _policy(tmp_path, identity_lake.POLICY.replace(*change, 1))
    out = dsr("--policy", str(path), "check", env={"DSR_PSEUDONYM_KEY": "x" * 32})
    assert out.returncode == 2, out.stdout + out.stderr
    line = out.stderr.strip()
    assert "\n" not in line
    for n in names:
        assert n in line, line


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("email= Jane@Example.ORG ", "email", "jane@example.org"),
    ("email=ÉMILE@Example.org", "email", "émile@example.org"),
    ("customer_no=+0077", "customer_no", "77"),
    ("user_id=77", "user_id", "77"),
])
def test_identifiers_are_canonical_once_typed(tmp_path: Path, text: str, kind: str, value: str) -> None:
    policy = load_policy(_policy(tmp_path))
    assert parse_kind_value(text, policy.kinds) == Identifier(kind, value)


@pytest.mark.parametrize("text", ["user_id= 77", "email=a\u200bb@x.org", "customer_no=7.5", "77"])
def test_identifiers_that_do_not_fit_are_refused_without_the_value(tmp_path: Path, text: str) -> None:
    policy = load_policy(_policy(tmp_path))
    with pytest.raises(InputError) as err:
        parse_kind_value(text, policy.kinds)
    value = text.partition("=")[2] or text
    assert value.strip() not in str(err.value)


def test_csv_import_takes_an_id_kind_column(tmp_path: Path) -> None:
    from dsr.core import control

    policy = load_policy(_policy(tmp_path))
    csv = tmp_path / "r.csv"
    csv.write_text("kind,subject_id,id_kind,ticket\nerase, Jane@Example.org,email,T1\nexport,5001,customer_no,T2\n"
                   "erase,jane@example.org,email,T3\n", encoding="utf-8")
    results = control.import_csv(policy, str(csv))
    assert [created for _, created in results] == [True, True, False]  # the third: the same person, normalised
    got = {r.ticket: r for r in control.list_requests(policy)}
    assert (got["T1"].id_kind, got["T1"].subject_id) == ("email", "jane@example.org")
    assert got["T2"].given() == (Identifier("customer_no", "5001"),)
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,subject_id,id_kind\nerase,12x,customer_no\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        control.import_csv(policy, str(bad))
    assert "line 2" in str(err.value) and "12x" not in str(err.value)
