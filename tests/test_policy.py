"""dsr/policy.py: the YAML policy becomes frozen objects, and every mistake is refused with one clear line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dsr.errors import PolicyError
from dsr.policy import Mask, Policy, TableSpec, check_against_lake, load_policy, resolve_policy_path
from tests.helpers import BASE_POLICY, KEY_ENV, FoundationLake, run_dsr, write_policy


def _variant(old: str, new: str, base: str = BASE_POLICY) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


# Each case: the policy text, and what the one-line message must name.
LOAD_ERRORS = {
    "unknown erase strategy": (
        _variant("    erase: delete\n", "    erase: shred\n"),
        ["'events'", "'shred'", "delete | anonymise | retain"],
    ),
    "unknown mask": (
        _variant("      email: nullify\n", "      email: scramble\n"),
        ["'users'", "'email'", "'scramble'"],
    ),
    "unknown mask given as a mapping": (
        _variant("      full_name: {redact: \"[erased]\"}\n", "      full_name: {shuffle: 3}\n"),
        ["'users'", "'full_name'", "'shuffle'"],
    ),
    "anonymise leaving the subject column unmasked": (
        _variant("      user_id: pseudonymise\n", ""),
        ["'users'", "'user_id'", "unmasked"],
    ),
    "anonymise masking the subject with a constant": (
        _variant("      user_id: pseudonymise\n", "      user_id: {redact: \"x\"}\n"),
        ["'users'", "'user_id'", "pseudonymise or nullify"],
    ),
    "retain without a reason": (
        _variant('    reason: "GDPR Art. 7(1): proof of consent"\n', ""),
        ["'consents'", "'reason'", "retain"],
    ),
    "retain with a blank reason": (
        _variant('    reason: "GDPR Art. 7(1): proof of consent"\n', '    reason: "  "\n'),
        ["'consents'", "'reason'"],
    ),
    "duplicate table names": (
        _variant("  - name: consents\n    path: consents\n", "  - name: events\n    path: consents\n"),
        ["'events'", "duplicate"],
    ),
    "two tables on one path": (
        _variant("  - name: consents\n    path: consents\n", "  - name: consents\n    path: events\n"),
        ["'events'", "'consents'", "same path"],
    ),
    "unknown top-level key": (BASE_POLICY + "tabels: []\n", ["'tabels'"]),
    "unknown table key": (
        _variant("    erase: delete\n", "    erase: delete\n    subjet: x\n"),
        ["'events'", "'subjet'"],
    ),
    "a mask on a table that deletes": (
        _variant("    erase: delete\n", "    erase: delete\n    mask: {page: nullify}\n"),
        ["'events'", "'mask'", "anonymise"],
    ),
    "no tables": ("lake: ./lake\ntables: []\n", ["'tables'"]),
    "not YAML": ("lake: ./lake\ntables: [\n", ["not valid YAML", "line"]),
}


@pytest.mark.parametrize("case", sorted(LOAD_ERRORS))
def test_a_bad_policy_is_refused_naming_what_is_wrong(foundation_lake: FoundationLake, case: str) -> None:
    text, named = LOAD_ERRORS[case]
    path = write_policy(foundation_lake.root, text, name="bad.yml")

    with pytest.raises(PolicyError) as err:
        load_policy(path)

    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    for part in named:
        if part == "delete | anonymise | retain":
            assert all(s in message for s in ("delete", "anonymise", "retain")), message
        else:
            assert part in message, message


def test_pseudonymise_without_the_key_env_var_names_the_table_and_the_variable(
    foundation_lake: FoundationLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)

    with pytest.raises(PolicyError) as err:
        load_policy(foundation_lake.policy_path)

    assert "'users'" in str(err.value)
    assert KEY_ENV in str(err.value)


def test_a_custom_key_env_var_is_the_one_named(
    foundation_lake: FoundationLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACME_PSEUDONYM_KEY", raising=False)
    text = _variant("pseudonym_key_env: DSR_PSEUDONYM_KEY\n", "pseudonym_key_env: ACME_PSEUDONYM_KEY\n")

    with pytest.raises(PolicyError, match="ACME_PSEUDONYM_KEY"):
        load_policy(write_policy(foundation_lake.root, text, name="acme.yml"))


def test_a_short_key_is_refused_without_echoing_it(
    foundation_lake: FoundationLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "tiny-secret")

    with pytest.raises(PolicyError) as err:
        load_policy(foundation_lake.policy_path)

    assert KEY_ENV in str(err.value)
    assert "tiny-secret" not in str(err.value)


def test_a_policy_without_pseudonymise_needs_no_key(
    foundation_lake: FoundationLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    text = _variant("      user_id: pseudonymise\n", "      user_id: nullify\n")
    text = text.replace("  - name: users", "  - name: users_nullified", 1)

    policy = load_policy(write_policy(foundation_lake.root, text, name="nokey.yml"))

    assert not policy.needs_key
    with pytest.raises(PolicyError, match=KEY_ENV):
        policy.pseudonym_key()


# --- against the lake: Delta metadata only ---------------------------------------------------------------


LAKE_ERRORS = {
    "a mask on a column the table does not have": (
        _variant("      email: nullify\n", "      phone: nullify\n"),
        ["'users'", "'phone'", "does not have"],
    ),
    "a subject column the table does not have": (
        _variant("    subject: user_id\n    erase: delete\n", "    subject: customer_id\n    erase: delete\n"),
        ["'events'", "'customer_id'", "not found"],
    ),
    "a table path that does not exist": (
        _variant("    path: events\n", "    path: evnets\n"),
        ["'events'", "'evnets'", "not a Delta table"],
    ),
    "a never_export column the table does not have": (
        _variant("    never_export: [password_hash]\n", "    never_export: [pw]\n"),
        ["'users'", "'pw'"],
    ),
    "a mask that does not fit the column type": (
        _variant("      birth_date: year\n", "      birth_date: ipv4_24\n"),
        ["'users'", "'birth_date'", "text columns"],
    ),
    "nullify on a NOT NULL subject column": (
        _variant("      user_id: pseudonymise\n", "      user_id: nullify\n"),
        ["'users'", "'user_id'", "NOT NULL"],
    ),
}


@pytest.mark.parametrize("case", sorted(LAKE_ERRORS))
def test_a_policy_that_does_not_match_the_lake_is_refused(foundation_lake: FoundationLake, case: str) -> None:
    text, named = LAKE_ERRORS[case]
    policy = load_policy(write_policy(foundation_lake.root, text, name="bad.yml"))

    with pytest.raises(PolicyError) as err:
        check_against_lake(policy)

    message = str(err.value)
    assert "\n" not in message
    for part in named:
        assert part in message, message


def test_a_directory_of_parquet_files_is_not_a_delta_table(foundation_lake: FoundationLake) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = foundation_lake.lake / "plain"
    plain.mkdir()
    pq.write_table(pa.table({"user_id": ["u1"]}), plain / "part-0.parquet")
    text = _variant("    path: events\n", "    path: plain\n")
    policy = load_policy(write_policy(foundation_lake.root, text, name="plain.yml"))

    with pytest.raises(PolicyError, match=r"table 'events': path 'plain' is not a Delta table"):
        check_against_lake(policy)


def test_lake_checks_read_only_the_delta_log(foundation_lake: FoundationLake) -> None:
    for data_file in foundation_lake.lake.glob("*/*.parquet"):
        data_file.unlink()  # were any data file read, the check would fail

    schemas = check_against_lake(load_policy(foundation_lake.policy_path))

    assert sorted(schemas) == ["consents", "events", "users"]
    assert "password_hash" in schemas["users"].names


# --- a valid policy ----------------------------------------------------------------------------------------


def test_a_valid_policy_parses_into_frozen_objects(foundation_lake: FoundationLake) -> None:
    policy = load_policy(foundation_lake.policy_path)

    assert isinstance(policy, Policy)
    assert policy.lake == str(foundation_lake.lake)
    assert policy.requests_uri == str(foundation_lake.lake / "_dsr" / "requests")
    assert policy.audit_uri == str(foundation_lake.lake / "_dsr" / "audit")
    assert policy.export_before_erase is True
    assert isinstance(policy.tables, tuple) and all(isinstance(t, TableSpec) for t in policy.tables)
    events, users, consents = policy.tables
    assert (events.name, events.erase, events.subject, events.uri) == (
        "events", "delete", "user_id", str(foundation_lake.lake / "events")
    )
    assert users.mask_map == {
        "user_id": Mask("pseudonymise"),
        "email": Mask("nullify"),
        "full_name": Mask("redact", "[erased]"),
        "birth_date": Mask("year"),
        "last_ip": Mask("ipv4_24"),
    }
    assert users.never_export == ("password_hash",)
    assert consents.reason == "GDPR Art. 7(1): proof of consent"
    assert policy.table("users") is users
    assert policy.pseudonym_key() == b"foundation-test-key-0123456789"
    assert "foundation-test-key" not in repr(policy)

    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.lake = "/elsewhere"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        users.erase = "delete"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        users.masks[0][1].strategy = "nullify"  # type: ignore[misc]


def test_plain_redact_means_the_default_constant(foundation_lake: FoundationLake) -> None:
    text = _variant("      full_name: {redact: \"[erased]\"}\n", "      full_name: redact\n")

    policy = load_policy(write_policy(foundation_lake.root, text, name="redact.yml"))

    assert policy.table("users").mask_map["full_name"] == Mask("redact", "[erased]")


def test_relative_paths_are_relative_to_the_policy_file_not_the_working_dir(
    foundation_lake: FoundationLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.parent)

    policy = load_policy(foundation_lake.policy_path)

    assert policy.lake == str(foundation_lake.lake)
    assert check_against_lake(policy)


def test_policy_path_is_the_flag_then_the_env_var_then_dsr_yml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSR_POLICY", "/etc/dsr/policy.yml")
    assert resolve_policy_path("mine.yml") == "mine.yml"
    assert resolve_policy_path(None) == "/etc/dsr/policy.yml"
    monkeypatch.delenv("DSR_POLICY")
    assert resolve_policy_path(None) == "dsr.yml"


def test_a_missing_policy_file_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="--policy FILE or set DSR_POLICY"):
        load_policy(tmp_path / "absent.yml")


# --- the CLI: exit 2, one line on stderr, nothing on stdout -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (_variant("    erase: delete\n", "    erase: shred\n"), "'shred'"),
        (_variant("    path: events\n", "    path: evnets\n"), "not a Delta table"),
        (_variant("      email: nullify\n", "      phone: nullify\n"), "'phone'"),
    ],
    ids=["unknown-strategy", "not-a-delta-table", "mask-on-missing-column"],
)
def test_dsr_check_with_a_bad_policy_exits_2_with_one_line_on_stderr(
    foundation_lake: FoundationLake, text: str, named: str
) -> None:
    bad = write_policy(foundation_lake.root, text, name="bad.yml")

    proc = run_dsr("--policy", str(bad), "check", env=foundation_lake.env)

    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dsr: error: ") and named in lines[0]
    assert not (foundation_lake.lake / "_dsr").exists()
