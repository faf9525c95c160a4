"""dsr/subjects.py: what people type as a subject id, ticket or requester is refused, in one line that never
echoes it, when it holds a character nobody sees or one that changes how the text reads."""

from __future__ import annotations

import pytest

from dsr.core import control
from dsr.core.policy import Policy
from dsr.core.subjects import CONTROL_CHARS, check_subject_id, check_text, text_problem
from dsr.errors import InputError
from tests import lakes

INVISIBLE = {
    "zero-width-space": "\u200b",
    "zero-width-non-joiner": "\u200c",
    "zero-width-joiner": "\u200d",
    "word-joiner": "\u2060",
    "function-application": "\u2061",
    "invisible-times": "\u2062",
    "invisible-separator": "\u2063",
    "invisible-plus": "\u2064",
    "bom": "\ufeff",
    "soft-hyphen": "\u00ad",
    "mongolian-vowel-separator": "\u180e",
}
BIDI = {
    "arabic-letter-mark": "\u061c",
    "lrm": "\u200e",
    "rlm": "\u200f",
    "lre": "\u202a",
    "rle": "\u202b",
    "pdf": "\u202c",
    "lro": "\u202d",
    "rlo": "\u202e",
    "lri": "\u2066",
    "rli": "\u2067",
    "fsi": "\u2068",
    "pdi": "\u2069",
}
SURROGATES = {"low-from-undecodable-byte": "\udcff", "high": "\ud800", "low": "\udfff"}

INVISIBLE_MESSAGE = "contains an invisible character (e.g. a zero-width space, soft hyphen or BOM)"
BIDI_MESSAGE = "contains a bidirectional control character (e.g. U+202E)"
SURROGATE_MESSAGE = "is not valid Unicode (it holds a lone surrogate, e.g. bytes that are not UTF-8)"

CASES = (
    [(f"invisible-{k}", v, INVISIBLE_MESSAGE) for k, v in INVISIBLE.items()]
    + [(f"bidi-{k}", v, BIDI_MESSAGE) for k, v in BIDI.items()]
    + [(f"surrogate-{k}", v, SURROGATE_MESSAGE) for k, v in SURROGATES.items()]
)


@pytest.mark.parametrize(("char", "message"), [(c, m) for _, c, m in CASES], ids=[i for i, _, _ in CASES])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_subject_id_with_an_invisible_bidi_or_surrogate_character_is_refused(
    char: str, message: str, where: str
) -> None:
    subject = {"start": f"{char}alice-42", "middle": f"alice{char}-42", "end": f"alice-42{char}"}[where]

    with pytest.raises(InputError) as err:
        check_subject_id(subject)

    assert str(err.value) == f"subject id: {message}"
    assert "alice" not in str(err.value) and "42" not in str(err.value)
    assert err.value.exit_code == 2


def test_a_lone_surrogate_no_longer_crashes_encoding() -> None:
    subject = "u\udcff1"  # what Python makes of the argv bytes b"u\xff1"
    with pytest.raises(UnicodeEncodeError):
        subject.encode("utf-8")

    with pytest.raises(InputError, match="not valid Unicode"):
        check_subject_id(subject, "request: subject id")


@pytest.mark.parametrize(
    "subject",
    ["u123", "alice@example.org", "\u00e9" * 256, "\u7528\u6237-1", "O'Brien, Ann", "a b", "x\u00a0y", "\U0001f600",
     "\u05d0\u05d1\u05d2-7", "-42"],
    ids=["ascii", "email", "256-accents", "cjk", "punctuation", "inner-space", "inner-nbsp", "emoji", "hebrew",
         "negative-number"],
)
def test_ordinary_ids_in_any_script_are_accepted(subject: str) -> None:
    assert check_subject_id(subject) == subject


def test_every_refused_character_is_in_control_chars_so_tickets_and_requesters_refuse_them_too() -> None:
    for _, char, _ in CASES:
        assert CONTROL_CHARS.search(f"T-{char}1"), repr(char)
    for ok in ("T-1", "dpo@example.org", "Jos\u00e9 M\u00fcller", "\u7528\u6237", "x\u00a0y"):
        assert CONTROL_CHARS.search(ok) is None, ok


@pytest.mark.parametrize(("char", "message"), [(c, m) for _, c, m in CASES[::4]], ids=[i for i, _, _ in CASES[::4]])
def test_check_text_refuses_the_same_characters_naming_the_field(char: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        check_text(f"T-{char}secret", "request: ticket")

    assert str(err.value) == f"request: ticket: {message}"
    assert text_problem(f"T-{char}") == message


def test_check_text_lets_empty_and_ordinary_text_through_and_bounds_the_length() -> None:
    assert check_text(None, "ticket") is None
    assert check_text("", "ticket") == ""
    assert check_text("CASE-2024/17 (DPO)", "ticket") == "CASE-2024/17 (DPO)"
    with pytest.raises(InputError, match=r"^ticket: longer than 256 characters \(257\)$"):
        check_text("x" * 257, "ticket")
    with pytest.raises(InputError, match=r"^ticket: contains a control character$"):
        check_text("T\n1", "ticket")


@pytest.mark.parametrize(
    ("field", "value"),
    [("ticket", "T-\u202e1"), ("requested_by", "dpo\u200b@example.org"), ("ticket", "T-\udcff")],
    ids=["bidi-ticket", "zero-width-requester", "surrogate-ticket"],
)
def test_control_refuses_such_a_ticket_or_requester_before_writing(
    intake_policy: Policy, field: str, value: str
) -> None:
    control.submit(intake_policy, "erase", "u1")
    versions = lakes.version(intake_policy.requests_uri), lakes.version(intake_policy.audit_uri)

    with pytest.raises(InputError, match=field):
        control.submit(intake_policy, "erase", "u2", **{field: value})

    assert (lakes.version(intake_policy.requests_uri), lakes.version(intake_policy.audit_uri)) == versions


@pytest.mark.parametrize("char", ["\u200b", "\u202e", "\udcff"], ids=["zero-width", "bidi", "surrogate"])
def test_control_refuses_such_a_subject_id_before_writing(intake_policy: Policy, char: str) -> None:
    with pytest.raises(InputError, match=r"^request: subject id: ") as err:
        control.submit(intake_policy, "erase", f"secret-person{char}")

    assert "secret-person" not in str(err.value)
    assert control.list_requests(intake_policy) == []
