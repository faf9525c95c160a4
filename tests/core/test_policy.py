"""dsr/core/policy.py: load_policy, where the policy file is found, the pseudonym key read when needed, and the
checks against the lake (Delta metadata only); dsr check exits 2 with one line on a bad policy."""

from __future__ import annotations

import dataclasses

import pytest

from dsr.core.policy import check_against_lake, load_policy, resolve_policy_path
from dsr.errors import PolicyError
from tests import lakes
from tests.core.conftest import variant
from tests.invoke import dsr
from tests.lakes import KEY_ENV, Lake, write_policy


def test_pseudonymise_without_the_key_env_var_names_the_table_and_the_variable(
    small_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)

    policy = load_policy(small_lake.policy_path)  # the key is read when needed, not when loading

    assert policy.needs_key
    for needs_the_key in (policy.pseudonym_key, lambda: check_against_lake(policy)):
        with pytest.raises(PolicyError) as err:
            needs_the_key()
        assert str(err.value) == (
            f"policy {small_lake.policy_path}: table 'users' pseudonymises, but the key environment variable "
            f"{KEY_ENV} is not set (set it to a secret of at least 16 bytes, not counting white space)"
        )


def test_a_custom_key_env_var_is_the_one_named(
    small_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACME_PSEUDONYM_KEY", raising=False)
    text = variant("pseudonym_key_env: DSR_PSEUDONYM_KEY\n", "pseudonym_key_env: ACME_PSEUDONYM_KEY\n")
    policy = load_policy(write_policy(small_lake.root, text, name="acme.yml"))

    with pytest.raises(PolicyError, match="ACME_PSEUDONYM_KEY"):
        policy.pseudonym_key()

    monkeypatch.setenv("ACME_PSEUDONYM_KEY", "acme-secret-0123456789")
    assert policy.pseudonym_key() == b"acme-secret-0123456789"


@pytest.mark.parametrize(
    "key",
    ["tiny-secret", " " * 16, " " * 40, "\t\n" * 20, "short-key  \t  padded", "\u00e9" * 7 + "\u3000" * 4,
     "abc\u00a0" * 5],
    ids=["11-chars", "16-spaces", "40-spaces", "tabs-newlines", "padded-short", "7-accents-ideographic-spaces",
         "15-bytes-with-nbsp"],
)
def test_a_short_key_is_refused_without_echoing_it(
    small_lake: Lake, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv(KEY_ENV, key)
    policy = load_policy(small_lake.policy_path)

    with pytest.raises(PolicyError) as err:
        policy.pseudonym_key()

    assert str(err.value) == (
        f"policy {small_lake.policy_path}: the key in {KEY_ENV} is too short "
        f"(at least 16 bytes, not counting white space)"
    )
    if key.strip():
        assert key.strip() not in str(err.value)


@pytest.mark.parametrize(
    "key", ["0123456789abcdef", "\u00e9" * 8, "  0123456789abcdef\n", "k" * 1000],
    ids=["16-ascii", "8-accents-16-bytes", "padded-16", "long"],
)
def test_a_key_of_16_bytes_besides_white_space_is_accepted_as_given(
    small_lake: Lake, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv(KEY_ENV, key)

    assert load_policy(small_lake.policy_path).pseudonym_key() == key.encode("utf-8")


def test_the_key_is_read_when_asked_for_and_never_kept_in_the_policy(
    small_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = load_policy(small_lake.policy_path)
    assert not any(f.name.startswith("_") for f in dataclasses.fields(policy))
    assert lakes.KEY not in repr(policy)

    monkeypatch.setenv(KEY_ENV, "another-key-of-enough-bytes")
    assert policy.pseudonym_key() == b"another-key-of-enough-bytes"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(PolicyError, match=KEY_ENV):
        policy.pseudonym_key()


def test_a_policy_without_pseudonymise_needs_no_key(
    small_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    text = variant("      user_id: pseudonymise\n", "      user_id: nullify\n")
    text = text.replace("  - name: users", "  - name: users_nullified", 1)

    policy = load_policy(write_policy(small_lake.root, text, name="nokey.yml"))

    assert not policy.needs_key
    with pytest.raises(PolicyError, match=f"the key environment variable {KEY_ENV} is not set"):
        policy.pseudonym_key()


# --- against the lake: Delta metadata only ---------------------------------------------------------------


LAKE_ERRORS = {
    "a mask on a column the table does not have": (
        variant("      email: nullify\n", "      phone: nullify\n"),
        ["'users'", "'phone'", "does not have"],
    ),
    "a subject column the table does not have": (
        variant("    subject: user_id\n    erase: delete\n", "    subject: customer_id\n    erase: delete\n"),
        ["'events'", "'customer_id'", "not found"],
    ),
    "a table path that does not exist": (
        variant("    path: events\n", "    path: evnets\n"),
        ["'events'", "'evnets'", "not a Delta table"],
    ),
    "a never_export column the table does not have": (
        variant("    never_export: [password_hash]\n", "    never_export: [pw]\n"),
        ["'users'", "'pw'"],
    ),
    "a mask that does not fit the column type": (
        variant("      birth_date: year\n", "      birth_date: ipv4_24\n"),
        ["'users'", "'birth_date'", "text columns"],
    ),
    "nullify on a NOT NULL subject column": (
        variant("      user_id: pseudonymise\n", "      user_id: nullify\n"),
        ["'users'", "'user_id'", "NOT NULL"],
    ),
}


@pytest.mark.parametrize("case", sorted(LAKE_ERRORS))
def test_a_policy_that_does_not_match_the_lake_is_refused(small_lake: Lake, case: str) -> None:
    text, named = LAKE_ERRORS[case]
    policy = load_policy(write_policy(small_lake.root, text, name="bad.yml"))

    with pytest.raises(PolicyError) as err:
        check_against_lake(policy)

    message = str(err.value)
    assert "\n" not in message
    for part in named:
        assert part in message, message


def test_a_directory_of_parquet_files_is_not_a_delta_table(small_lake: Lake) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = small_lake.lake / "plain"
    plain.mkdir()
    pq.write_table(pa.table({"user_id": ["u1"]}), plain / "part-0.parquet")
    text = variant("    path: events\n", "    path: plain\n")
    policy = load_policy(write_policy(small_lake.root, text, name="plain.yml"))

    with pytest.raises(PolicyError, match=r"table 'events': path 'plain' is not a Delta table"):
        check_against_lake(policy)


def test_lake_checks_read_only_the_delta_log(small_lake: Lake) -> None:
    for data_file in small_lake.lake.glob("*/*.parquet"):
        data_file.unlink()  # were any data file read, the check would fail

    schemas = check_against_lake(load_policy(small_lake.policy_path))

    assert sorted(schemas) == ["consents", "events", "users"]
    assert "password_hash" in schemas["users"].names


def test_policy_path_is_the_flag_then_the_env_var_then_dsr_yml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSR_POLICY", "/etc/dsr/policy.yml")
    assert resolve_policy_path("mine.yml") == "mine.yml"
    assert resolve_policy_path(None) == "/etc/dsr/policy.yml"
    monkeypatch.delenv("DSR_POLICY")
    assert resolve_policy_path(None) == "dsr.yml"


# --- the CLI: exit 2, one line on stderr, nothing on stdout -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (variant("    erase: delete\n", "    erase: shred\n"), "'shred'"),
        (variant("    path: events\n", "    path: evnets\n"), "not a Delta table"),
        (variant("      email: nullify\n", "      phone: nullify\n"), "'phone'"),
    ],
    ids=["unknown-strategy", "not-a-delta-table", "mask-on-missing-column"],
)
def test_dsr_check_with_a_bad_policy_exits_2_with_one_line_on_stderr(
    small_lake: Lake, text: str, named: str
) -> None:
    bad = write_policy(small_lake.root, text, name="bad.yml")

    proc = dsr("--policy", str(bad), "check", env=small_lake.env)

    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dsr: error: ") and named in lines[0]
    assert not (small_lake.lake / "_dsr").exists()
