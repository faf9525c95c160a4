"""Mask reference implementations, with fixed vectors, and their SQL forms."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from dsr.core.masks import Mask, apply_mask, check_mask_type, mask_sql, pseudonym

KEY = b"fixed-test-key-0123456789"


def test_pseudonym_fixed_vectors_are_stable() -> None:
    # Fixed vectors: changing the pseudonym function would silently break joins on anonymised data.
    assert pseudonym(KEY, "u1", "string") == "psn_01b77b66f84fe39bf8cc299c8773016c"
    assert pseudonym(KEY, "u1", "int64") == -123703196958843804
    assert pseudonym(KEY, "u1", "int32") == -28801895


def test_pseudonym_follows_the_documented_formula() -> None:
    import hashlib
    import hmac

    d = hmac.new(KEY, b"dsr-lake/pseudonym/v1:" + b"u1", hashlib.sha256).digest()
    assert pseudonym(KEY, "u1", "string") == "psn_" + d.hex()[:32]
    assert pseudonym(KEY, "u1", "int64") == -(1 + (int.from_bytes(d[:8], "big") & (2**62 - 1)))


def test_pseudonym_is_keyed_and_deterministic() -> None:
    assert pseudonym(KEY, "42", "string") == pseudonym(KEY, "42", "string")
    assert pseudonym(KEY, "42", "string") != pseudonym(b"another-key-0123456789", "42", "string")
    assert pseudonym(KEY, "42", "string") != pseudonym(KEY, "43", "string")


def test_integer_pseudonyms_are_negative_and_fit_their_type() -> None:
    for sid in ("1", "2", "1003", "x"):
        p64 = pseudonym(KEY, sid, "int64")
        p32 = pseudonym(KEY, sid, "int32")
        assert isinstance(p64, int) and -(2**62) <= p64 < 0
        assert isinstance(p32, int) and -(2**30) <= p32 < 0


@pytest.mark.parametrize(
    ("mask", "value", "expected"),
    [
        (Mask("nullify"), "a@b.c", None),
        (Mask("redact", "[erased]"), "Jane Doe", "[erased]"),
        (Mask("year"), dt.date(1990, 5, 17), dt.date(1990, 1, 1)),
        (Mask("month"), dt.date(1990, 5, 17), dt.date(1990, 5, 1)),
        (Mask("month"), dt.datetime(2020, 3, 9, 13, 5, 1, 7, tzinfo=dt.UTC), dt.datetime(2020, 3, 1, tzinfo=dt.UTC)),
        (Mask("year"), None, None),
        (Mask("ipv4_24"), "192.168.17.254", "192.168.17.0"),
        (Mask("ipv4_24"), "2001:db8::1", None),
        (Mask("ipv4_24"), None, None),
    ],
)
def test_reference_masks(mask: Mask, value: object, expected: object) -> None:
    assert apply_mask(mask, value, key=KEY, subject_id="s") == expected


def test_pseudonymise_reference_uses_the_subject_not_the_cell() -> None:
    got = apply_mask(Mask("pseudonymise"), "whatever@x", key=KEY, subject_id="u1", kind="string")
    assert got == pseudonym(KEY, "u1", "string")


def test_mask_types_are_checked() -> None:
    assert check_mask_type(Mask("year"), pa.field("c", pa.string())) is not None
    assert check_mask_type(Mask("ipv4_24"), pa.field("c", pa.string())) is None
    assert "NOT NULL" in (check_mask_type(Mask("nullify"), pa.field("c", pa.string(), nullable=False)) or "")
    assert check_mask_type(Mask("pseudonymise"), pa.field("c", pa.int16())) is not None
    assert check_mask_type(Mask("pseudonymise"), pa.field("c", pa.int64())) is None


def test_sql_never_embeds_the_key_or_pseudonyms() -> None:
    for dialect in ("datafusion", "spark"):
        sql = mask_sql(Mask("pseudonymise"), "user_id", pa.field("user_id", pa.string()), dialect)
        assert sql == "s.__dsr_psn_string"
        sql = mask_sql(Mask("redact", "it's"), "n", pa.field("n", pa.string()), dialect)
        assert sql == "'it''s'"


def test_every_mask_is_declared_once_with_its_suite_and_subject_rule() -> None:
    """The registry is the one place a mask is described: its suite file exists, and only the masks that
    leave no id behind may mask a subject column (the policy's rule comes from the same entries)."""
    from dsr.core.masks import MASKS
    from dsr.core.policy import MASK_STRATEGIES
    from dsr.verify.ge import expectations_dir

    assert tuple(MASKS) == MASK_STRATEGIES
    for name, kind in MASKS.items():
        assert kind.name == name
        assert (expectations_dir() / f"{kind.suite}.json").is_file(), kind.suite
    assert {n for n, k in MASKS.items() if k.masks_subject} == {"pseudonymise", "nullify"}
    assert {n for n, k in MASKS.items() if k.checked_as_text} == {"year", "month", "ipv4_24"}
