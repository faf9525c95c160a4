"""dsr/plan/erasure.py: pure planning of one table's erase commit (subject keys, the MERGE source, the mask SQL).

Expected pseudonyms come from ``tests/expect.py`` (README's rules, written independently), never from
``dsr.core.masks``; cast results are literals.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dsr.core.masks import Mask, Strategy
from dsr.core.policy import TableSpec
from dsr.engines.base import KEY_COLUMN
from dsr.plan.erasure import SubjectKeys, build_source, build_updates, pseudonyms, subject_keys
from tests import expect, lakes
from tests.leaks import Leaks

KEY = b"plan-erasure-test-key-0123456789"
PSN_STRING, PSN_INT64, PSN_INT32 = "__dsr_psn_string", "__dsr_psn_int64", "__dsr_psn_int32"
TEXT_IDS = ["subj-a1b2", "subj-c3d4", "subj-e5f6"]


def users_schema() -> Any:
    return pa.schema([
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("email", pa.string()),
        pa.field("full_name", pa.string()),
        pa.field("birth_date", pa.date32()),
        pa.field("signup_at", pa.timestamp("us", tz="UTC")),
        pa.field("last_ip", pa.string()),
        pa.field("account_no", pa.int64()),
        pa.field("ref32", pa.int32()),
    ])


def spec(erase: Strategy, masks: dict[str, Mask] | None = None, subject: str = "user_id") -> TableSpec:
    return TableSpec(name="users", path="users", uri="/lake/users", subject=subject, erase=erase,
                     masks=tuple((masks or {}).items()))


def all_masks() -> dict[str, Mask]:
    return {
        "user_id": Mask("pseudonymise"), "email": Mask("nullify"), "full_name": Mask("redact", "[erased]"),
        "birth_date": Mask("year"), "signup_at": Mask("month"), "last_ip": Mask("ipv4_24"),
        "account_no": Mask("pseudonymise"), "ref32": Mask("pseudonymise"),
    }


def requests(*subject_ids: str) -> list[tuple[str, str]]:
    return [(f"req-{i}", sid) for i, sid in enumerate(subject_ids)]


# --- subject_keys ----------------------------------------------------------------------------------------------


def test_ids_on_a_text_column_are_kept_as_they_are() -> None:
    keys = subject_keys(requests(*TEXT_IDS, "x-77", "1003"), pa.string())
    assert isinstance(keys, SubjectKeys)
    assert keys.keys.type == pa.string()
    assert keys.keys.to_pylist() == [*TEXT_IDS, "x-77", "1003"]
    assert keys.uncastable == ()
    assert dict(keys.by_request) == {"req-0": (TEXT_IDS[0],), "req-1": (TEXT_IDS[1],), "req-2": (TEXT_IDS[2],),
                                     "req-3": ("x-77",), "req-4": ("1003",)}
    assert dict(keys.subject_of_key) == {k: k for k in [*TEXT_IDS, "x-77", "1003"]}


@pytest.mark.parametrize("column_type", [pa.int64(), pa.int32()])
def test_ids_on_an_integer_column_become_integers_and_x77_matches_nothing(column_type: Any) -> None:
    keys = subject_keys([("r1", "1003"), ("r2", "x-77"), ("r3", "1007"), ("r4", "-5")], column_type)
    assert keys.keys.type == column_type
    assert keys.keys.to_pylist() == [1003, 1007, -5]
    assert keys.uncastable == ("r2",)
    assert dict(keys.by_request) == {"r1": (1003,), "r3": (1007,), "r4": (-5,)}  # no entry for the uncastable request
    assert dict(keys.subject_of_key) == {1003: "1003", 1007: "1007", -5: "-5"}
    assert "x-77" not in keys.keys.to_pylist()


def test_an_id_too_large_for_32_bits_matches_nothing_on_an_int32_column_but_fits_int64() -> None:
    reqs = [("big", "3000000000"), ("max32", "2147483647"), ("min32", "-2147483648"), ("over", "2147483648")]
    k32 = subject_keys(reqs, pa.int32())
    assert k32.keys.to_pylist() == [2147483647, -2147483648]
    assert k32.uncastable == ("big", "over")
    k64 = subject_keys(reqs, pa.int64())
    assert k64.keys.to_pylist() == [3000000000, 2147483647, -2147483648, 2147483648]
    assert k64.uncastable == ()


@pytest.mark.parametrize("odd", ["1.5", "1e3", "", " 12", "0x1f", "١٢"])
def test_text_that_is_not_a_plain_integer_is_uncastable(odd: str) -> None:
    keys = subject_keys([("r", odd), ("ok", "12")], pa.int64())
    assert keys.uncastable == ("r",)
    assert keys.keys.to_pylist() == [12]
    assert dict(keys.by_request) == {"ok": (12,)}


def test_duplicate_ids_give_unique_keys_and_every_request_its_key() -> None:
    reqs = [("r1", "1003"), ("r2", "1007"), ("r3", "1003"), ("r4", "x-77"), ("r5", "x-77"), ("r6", "1007")]
    keys = subject_keys(reqs, pa.int64())
    assert keys.keys.to_pylist() == [1003, 1007]  # first-seen order, once each
    assert dict(keys.by_request) == {"r1": (1003,), "r2": (1007,), "r3": (1003,), "r6": (1007,)}
    assert keys.uncastable == ("r4", "r5")
    assert dict(keys.subject_of_key) == {1003: "1003", 1007: "1007"}

    text = subject_keys([("a", TEXT_IDS[0]), ("b", TEXT_IDS[0]), ("c", TEXT_IDS[1])], pa.string())
    assert text.keys.to_pylist() == TEXT_IDS[:2]
    assert dict(text.by_request) == {"a": (TEXT_IDS[0],), "b": (TEXT_IDS[0],), "c": (TEXT_IDS[1],)}


def test_no_requests_or_only_uncastable_ones_give_an_empty_key_array_of_the_column_type() -> None:
    empty = subject_keys([], pa.int32())
    assert (len(empty.keys), empty.keys.type, empty.uncastable) == (0, pa.int32(), ())
    assert dict(empty.by_request) == {} and dict(empty.subject_of_key) == {}
    none = subject_keys([("r1", "x-77")], pa.int64())
    assert (len(none.keys), none.keys.type, none.uncastable) == (0, pa.int64(), ("r1",))


# --- pseudonyms ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["string", "int64", "int32"])
def test_pseudonyms_follow_the_readme_in_key_order(kind: str) -> None:
    keys = subject_keys([("r1", "1007"), ("r2", "1003"), ("r3", "1007"), ("r4", "x-77")], pa.int64())
    got = pseudonyms(keys, KEY, kind)
    assert got == [expect.pseudonym(KEY, "1007", kind), expect.pseudonym(KEY, "1003", kind)]
    if kind != "string":
        assert all(isinstance(p, int) and p < 0 for p in got)


def test_pseudonyms_are_of_the_subject_id_not_of_the_cast_key() -> None:
    # the text id "1003" and the integer 1003 are one subject: the same pseudonym in every table
    as_text = pseudonyms(subject_keys([("r", "1003")], pa.string()), KEY, "string")
    as_int = pseudonyms(subject_keys([("r", "1003")], pa.int64()), KEY, "string")
    assert as_text == as_int == [expect.pseudonym(KEY, "1003", "string")]
    assert pseudonyms(subject_keys([("r", "x-77")], pa.int64()), KEY, "string") == []


def test_literal_pseudonym_vector() -> None:
    """One pinned value: the documented formula, by hand (HMAC-SHA256 under the domain tag)."""
    import hashlib
    import hmac

    digest = hmac.new(KEY, b"dsr-lake/pseudonym/v1:subj-a1b2", hashlib.sha256).digest()
    keys = subject_keys([("r", "subj-a1b2")], pa.string())
    assert pseudonyms(keys, KEY, "string") == ["psn_" + digest.hex()[:32]]
    assert pseudonyms(keys, KEY, "int32") == [-(1 + (int.from_bytes(digest[:4], "big") & (2**30 - 1)))]


# --- build_source ----------------------------------------------------------------------------------------------


def test_anonymise_source_has_the_key_and_one_pseudonym_column_per_needed_kind() -> None:
    schema = users_schema()
    keys = subject_keys(requests(*TEXT_IDS, TEXT_IDS[0]), pa.string())
    source = build_source(spec(Strategy.ANONYMISE, all_masks()), schema, keys, KEY)
    assert sorted(source.column_names) == sorted([KEY_COLUMN, PSN_STRING, PSN_INT64, PSN_INT32])
    assert source.column_names[0] == KEY_COLUMN
    assert source.num_rows == 3
    assert source.schema.field(KEY_COLUMN).type == pa.string()
    assert (source.schema.field(PSN_STRING).type, source.schema.field(PSN_INT64).type,
            source.schema.field(PSN_INT32).type) == (pa.string(), pa.int64(), pa.int32())
    assert source.column(KEY_COLUMN).to_pylist() == TEXT_IDS
    for column, kind in ((PSN_STRING, "string"), (PSN_INT64, "int64"), (PSN_INT32, "int32")):
        assert source.column(column).to_pylist() == [expect.pseudonym(KEY, s, kind) for s in TEXT_IDS], column
    assert source.column(PSN_STRING).null_count == 0


def test_source_rows_pair_each_key_with_its_own_subjects_pseudonym() -> None:
    schema = users_schema()
    keys = subject_keys([("r1", "1020"), ("r2", "x-77"), ("r3", "1011"), ("r4", "1020")], pa.int64())
    source = build_source(spec(Strategy.ANONYMISE, {"account_no": Mask("pseudonymise")}, subject="account_no"),
                          schema, keys, KEY)
    assert source.column_names == [KEY_COLUMN, PSN_INT64]  # only the kind the masks need
    assert source.schema.field(KEY_COLUMN).type == pa.int64()
    assert source.to_pylist() == [
        {KEY_COLUMN: 1020, PSN_INT64: expect.pseudonym(KEY, "1020", "int64")},
        {KEY_COLUMN: 1011, PSN_INT64: expect.pseudonym(KEY, "1011", "int64")},
    ]


def test_only_pseudonymise_masks_add_pseudonym_columns() -> None:
    schema = users_schema()
    keys = subject_keys(requests(*TEXT_IDS), pa.string())
    masks = {"email": Mask("nullify"), "full_name": Mask("redact", "[gone]"), "birth_date": Mask("year"),
             "signup_at": Mask("month"), "last_ip": Mask("ipv4_24")}
    for key in (KEY, None):  # no pseudonym needed: no key needed
        source = build_source(spec(Strategy.ANONYMISE, masks), schema, keys, key)
        assert source.column_names == [KEY_COLUMN]
        assert source.column(KEY_COLUMN).to_pylist() == TEXT_IDS
    one = build_source(spec(Strategy.ANONYMISE, {**masks, "ref32": Mask("pseudonymise")}), schema, keys, KEY)
    assert one.column_names == [KEY_COLUMN, PSN_INT32]
    assert one.column(PSN_INT32).to_pylist() == [expect.pseudonym(KEY, s, "int32") for s in TEXT_IDS]


def test_two_columns_of_one_kind_share_one_pseudonym_column() -> None:
    schema = pa.schema([pa.field("user_id", pa.string()), pa.field("alias", pa.large_string())])
    masks = {"user_id": Mask("pseudonymise"), "alias": Mask("pseudonymise")}
    source = build_source(spec(Strategy.ANONYMISE, masks), schema, subject_keys(requests("1003"), pa.string()), KEY)
    assert source.column_names == [KEY_COLUMN, PSN_STRING]
    assert source.column(PSN_STRING).to_pylist() == [expect.pseudonym(KEY, "1003", "string")]


def test_pseudonymise_without_the_key_is_refused() -> None:
    keys = subject_keys(requests(*TEXT_IDS), pa.string())
    with pytest.raises(ValueError, match="pseudonym key") as info:
        build_source(spec(Strategy.ANONYMISE, {"user_id": Mask("pseudonymise")}), users_schema(), keys, None)
    assert Leaks(TEXT_IDS, whole_token=False).found_in(str(info.value)) == []


def test_delete_needs_no_key_and_its_source_is_the_key_column_alone() -> None:
    schema = users_schema()
    keys = subject_keys([("r1", "1003"), ("r2", "x-77"), ("r3", "1003")], pa.int32())
    source = build_source(spec(Strategy.DELETE, subject="ref32"), schema, keys, None)
    assert source.column_names == [KEY_COLUMN]
    assert source.schema.field(KEY_COLUMN).type == pa.int32()
    assert source.column(KEY_COLUMN).to_pylist() == [1003]
    with_key = build_source(spec(Strategy.DELETE, subject="ref32"), schema, keys, KEY)
    assert with_key.equals(source)  # a key, when given, adds nothing to a delete


def test_source_of_an_empty_batch_is_empty_but_typed() -> None:
    keys = subject_keys([("r1", "x-77")], pa.int64())
    source = build_source(spec(Strategy.ANONYMISE, all_masks(), subject="account_no"), users_schema(), keys, KEY)
    assert source.num_rows == 0
    assert source.schema.field(KEY_COLUMN).type == pa.int64()
    assert source.schema.field(PSN_INT64).type == pa.int64()


def test_source_from_the_schema_of_a_real_delta_table(tmp_path: Path) -> None:
    """The schema as a real Delta table gives it back (read with deltalake, not dsr)."""
    from deltalake import DeltaTable

    path = lakes.write_table(tmp_path / "orders", {
        "order_id": ["o1", "o2"], "user_no": pa.array([1003, 1007], pa.int64()),
        "ref32": pa.array([1, 2], pa.int32()), "placed": [dt.date(2025, 3, 4), dt.date(2025, 5, 6)],
    })
    schema = pa.schema(DeltaTable(str(path)).schema().to_arrow())
    keys = subject_keys([("r1", "1007"), ("r2", "x-77")], schema.field("user_no").type)
    masks = {"user_no": Mask("pseudonymise"), "ref32": Mask("pseudonymise"), "placed": Mask("year")}
    source = build_source(spec(Strategy.ANONYMISE, masks, subject="user_no"), schema, keys, KEY)
    assert source.to_pylist() == [{KEY_COLUMN: 1007, PSN_INT32: expect.pseudonym(KEY, "1007", "int32"),
                                   PSN_INT64: expect.pseudonym(KEY, "1007", "int64")}]
    assert keys.uncastable == ("r2",)
    updates = build_updates(spec(Strategy.ANONYMISE, masks, subject="user_no"), schema, "datafusion")
    assert set(updates) == set(masks)


# --- build_updates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["datafusion", "spark"])
def test_one_sql_expression_per_masked_column(dialect: str) -> None:
    masks = all_masks()
    updates = build_updates(spec(Strategy.ANONYMISE, masks), users_schema(), dialect)
    assert set(updates) == set(masks)
    assert all(isinstance(e, str) and e.strip() for e in updates.values())
    assert updates["email"] == "NULL"
    assert updates["full_name"] == "'[erased]'"
    # pseudonyms come from the source's column of the column's kind
    assert updates["user_id"] == f"s.{PSN_STRING}"
    assert updates["account_no"] == f"s.{PSN_INT64}"
    assert updates["ref32"] == f"s.{PSN_INT32}"
    # the truncations and the address mask read the target's own column
    for column in ("birth_date", "signup_at", "last_ip"):
        assert column in updates[column] and "t." in updates[column]
    assert "'year'" in updates["birth_date"] and "'month'" in updates["signup_at"]


@pytest.mark.parametrize("dialect", ["datafusion", "spark"])
def test_mask_sql_never_holds_a_subject_id_the_key_or_the_key_column(dialect: str) -> None:
    ids = [*TEXT_IDS, "1003", "x-77"]
    schema = users_schema()
    table = spec(Strategy.ANONYMISE, all_masks())
    keys = subject_keys(requests(*ids), pa.string())
    source = build_source(table, schema, keys, KEY)  # planned together, as the erase step does
    updates = build_updates(table, schema, dialect)
    texts = {f"update of {c}": e for c, e in updates.items()}
    assert Leaks(ids, whole_token=False).in_texts(texts) == []
    pseudonym_values = [str(v) for c in source.column_names[1:] for v in source.column(c).to_pylist()]
    assert Leaks([KEY.decode(), *pseudonym_values], whole_token=False).in_texts(texts) == []
    assert Leaks([KEY_COLUMN], whole_token=False).in_texts(texts) == []


def test_redact_text_is_quoted_as_a_sql_literal() -> None:
    masks = {"full_name": Mask("redact", "O'Brien \\ gone")}
    df = build_updates(spec(Strategy.ANONYMISE, masks), users_schema(), "datafusion")
    spark = build_updates(spec(Strategy.ANONYMISE, masks), users_schema(), "spark")
    assert df == {"full_name": "'O''Brien \\ gone'"}
    assert spark == {"full_name": "'O''Brien \\\\ gone'"}


def test_delete_and_unmasked_tables_have_no_updates() -> None:
    assert build_updates(spec(Strategy.DELETE), users_schema(), "datafusion") == {}
    assert build_updates(spec(Strategy.ANONYMISE), users_schema(), "spark") == {}


def test_an_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="dialect"):
        build_updates(spec(Strategy.ANONYMISE, {"email": Mask("nullify")}), users_schema(), "postgres")
