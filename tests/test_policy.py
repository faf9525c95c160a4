"""dsr/policy.py: the YAML policy becomes frozen objects, and every mistake is refused with one clear line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dsr.core.masks import Mask
from dsr.core.policy import Policy, TableSpec, check_against_lake, load_policy, resolve_policy_path
from dsr.errors import PolicyError
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
    "a date that does not exist": (BASE_POLICY + "due_days: 2024-02-30\n", ["not valid YAML at line 25"]),
    "a non-text key next to an unknown one": (BASE_POLICY + "1: x\ntabels: y\n", ["unknown key"]),
    # issue 9: a key YAML would silently overwrite (the last one wins) is an error, wherever it is
    "a second top-level tables": (
        BASE_POLICY + "tables:\n  - {name: other, path: other, subject: user_id, erase: delete}\n",
        ["duplicate key 'tables' at line 25 (first at line 4)"],
    ),
    "a second top-level lake": (
        BASE_POLICY + "lake: /elsewhere\n", ["duplicate key 'lake' at line 25 (first at line 1)"]
    ),
    "a second erase in a table": (
        _variant("    erase: delete\n", "    erase: delete\n    erase: retain\n"),
        ["duplicate key 'erase' at line 9 (first at line 8)"],
    ),
    "a column masked twice": (
        _variant("      email: nullify\n", "      email: nullify\n      email: {redact: x}\n"),
        ["duplicate key 'email' at line 16 (first at line 15)"],
    ),
    "a nested duplicate": (
        _variant("      full_name: {redact: \"[erased]\"}\n", "      full_name: {redact: \"a\", redact: \"b\"}\n"),
        ["duplicate key 'redact' at line 16 (first at line 16)"],
    ),
    "a duplicate in a flow table entry": (
        BASE_POLICY + "  - {name: t1, path: t1, subject: user_id, name: t2, erase: delete}\n",
        ["duplicate key 'name' at line 25"],
    ),
    "a duplicate in an exempt entry": (
        BASE_POLICY + "exempt:\n  - path: geo_lookup\n    reason: a\n    reason: b\n",
        ["duplicate key 'reason' at line 28 (first at line 27)"],
    ),
    # issue 9: a table name is an identifier, never a path
    "a table name that is an absolute path": (
        _variant("  - name: events\n", "  - name: /some/dir/OUTSIDE\n"),
        ["tables entry 1", "'name' '/some/dir/OUTSIDE' is not a table name", "at most 128 characters"],
    ),
    "a table name that is ..": (_variant("  - name: events\n", "  - name: ..\n"), ["tables entry 1", "'..'"]),
    "a table name that is .": (_variant("  - name: events\n", "  - name: .\n"), ["tables entry 1", "'.'"]),
    "a table name with a separator": (
        _variant("  - name: events\n", "  - name: sales/orders\n"), ["'sales/orders' is not a table name"]
    ),
    "a table name with a backslash": (
        _variant("  - name: events\n", "  - name: 'a\\b'\n"), ["is not a table name"]
    ),
    "a table name with a space": (_variant("  - name: events\n", "  - name: my events\n"), ["not a table name"]),
    "a table name starting with a dot": (_variant("  - name: events\n", "  - name: .hidden\n"), ["not a table name"]),
    "a table name starting with a dash": (_variant("  - name: events\n", "  - name: -x\n"), ["not a table name"]),
    "a table name of 129 characters": (
        _variant("  - name: events\n", f"  - name: {'n' * 129}\n"), ["not a table name"]
    ),
    # issue 9: what dsr writes stays under the lake
    "control above the lake": (
        BASE_POLICY + "control: ../../x\n", ["'control' must be a relative folder", "'../../x'"]
    ),
    "control with a .. inside": (BASE_POLICY + "control: a/../b\n", ["'control' must be a relative folder"]),
    "control as an absolute path": (BASE_POLICY + "control: /var/dsr\n", ["'control' must be a relative folder"]),
    "control as a URI": (BASE_POLICY + "control: s3://bucket/dsr\n", ["'control' must be a relative folder"]),
    "control with an empty segment": (BASE_POLICY + "control: a//b\n", ["'control' must be a relative folder"]),
    "control as a number": (BASE_POLICY + "control: 5\n", ["'control' must be a relative folder"]),
    "a table path above the lake": (
        _variant("    path: events\n", "    path: ../outside\n"),
        ["table 'events'", "path '../outside' leaves the lake through '..'"],
    ),
    "a table path that climbs out after going in": (
        _variant("    path: events\n", "    path: events/../../x\n"), ["table 'events'", "leaves the lake"]
    ),
    "a table path outside the lake": (
        _variant("    path: events\n", "    path: /some/dir/OUTSIDE\n"),
        ["table 'events'", "path '/some/dir/OUTSIDE' is outside the lake"],
    ),
    "a table path on another storage": (
        _variant("    path: events\n", "    path: s3://bucket/events\n"), ["table 'events'", "is outside the lake"]
    ),
    "a table path that is a file URI": (
        _variant("    path: events\n", "    path: file:///tmp/events\n"), ["table 'events'", "is outside the lake"]
    ),
    "a table path that is the lake itself": (
        _variant("    path: events\n", "    path: .\n"), ["table 'events'", "is the lake root itself"]
    ),
    "a table path inside the control folder": (
        _variant("    path: events\n", "    path: _dsr/requests\n"), ["table 'events'", "control folder '_dsr'"]
    ),
    "a table path holding the control folder": (
        BASE_POLICY + "control: events/_dsr\n", ["table 'events'", "control folder 'events/_dsr'"]
    ),
    "an exempt path above the lake": (
        BASE_POLICY + "exempt:\n  - {path: ../geo, reason: x}\n", ["exempt path '../geo' leaves the lake"]
    ),
    "an exempt path outside the lake": (
        BASE_POLICY + "exempt:\n  - {path: /etc, reason: x}\n", ["exempt path '/etc' is outside the lake"]
    ),
    "an exempt entry with an unknown key": (
        BASE_POLICY + "exempt:\n  - {path: geo_lookup, reason: x, paht: y}\n", ["unknown key 'paht'"]
    ),
    # issue 9: numbers within range (10^12 minutes or days overflowed the date arithmetic)
    "due_days of 10^12": (
        BASE_POLICY + "due_days: 1000000000000\n", ["'due_days' must be a whole number from 1 to 3650"]
    ),
    "due_days of 3651": (BASE_POLICY + "due_days: 3651\n", ["'due_days'", "from 1 to 3650"]),
    "due_days of 0": (BASE_POLICY + "due_days: 0\n", ["'due_days'", "from 1 to 3650"]),
    "claim_ttl_minutes of 10^12": (
        BASE_POLICY + "claim_ttl_minutes: 1000000000000\n",
        ["'claim_ttl_minutes' must be a whole number from 1 to 10080"],
    ),
    "claim_ttl_minutes of 10081": (BASE_POLICY + "claim_ttl_minutes: 10081\n", ["'claim_ttl_minutes'", "1 to 10080"]),
    "max_attempts of 101": (
        BASE_POLICY + "max_attempts: 101\n", ["'max_attempts' must be a whole number from 1 to 100"]
    ),
    "max_attempts of 0": (BASE_POLICY + "max_attempts: 0\n", ["'max_attempts'", "from 1 to 100"]),
    "max_attempts as text": (BASE_POLICY + "max_attempts: lots\n", ["'max_attempts'", "from 1 to 100"]),
    "a key variable that is not a variable name": (
        _variant("pseudonym_key_env: DSR_PSEUDONYM_KEY\n", "pseudonym_key_env: \"A=B\"\n"),
        ["'pseudonym_key_env' must name an environment variable"],
    ),
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

    policy = load_policy(foundation_lake.policy_path)  # the key is read when needed, not when loading

    assert policy.needs_key
    for needs_the_key in (policy.pseudonym_key, lambda: check_against_lake(policy)):
        with pytest.raises(PolicyError) as err:
            needs_the_key()
        assert str(err.value) == (
            f"policy {foundation_lake.policy_path}: table 'users' pseudonymises, but the key environment variable "
            f"{KEY_ENV} is not set (set it to a secret of at least 16 bytes, not counting white space)"
        )


def test_a_custom_key_env_var_is_the_one_named(
    foundation_lake: FoundationLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACME_PSEUDONYM_KEY", raising=False)
    text = _variant("pseudonym_key_env: DSR_PSEUDONYM_KEY\n", "pseudonym_key_env: ACME_PSEUDONYM_KEY\n")
    policy = load_policy(write_policy(foundation_lake.root, text, name="acme.yml"))

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
    foundation_lake: FoundationLake, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv(KEY_ENV, key)
    policy = load_policy(foundation_lake.policy_path)

    with pytest.raises(PolicyError) as err:
        policy.pseudonym_key()

    assert str(err.value) == (
        f"policy {foundation_lake.policy_path}: the key in {KEY_ENV} is too short "
        f"(at least 16 bytes, not counting white space)"
    )
    if key.strip():
        assert key.strip() not in str(err.value)


@pytest.mark.parametrize(
    "key", ["0123456789abcdef", "\u00e9" * 8, "  0123456789abcdef\n", "k" * 1000],
    ids=["16-ascii", "8-accents-16-bytes", "padded-16", "long"],
)
def test_a_key_of_16_bytes_besides_white_space_is_accepted_as_given(
    foundation_lake: FoundationLake, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv(KEY_ENV, key)

    assert load_policy(foundation_lake.policy_path).pseudonym_key() == key.encode("utf-8")


def test_the_key_is_read_when_asked_for_and_never_kept_in_the_policy(
    foundation_lake: FoundationLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = load_policy(foundation_lake.policy_path)
    assert not any(f.name.startswith("_") for f in dataclasses.fields(policy))
    assert "foundation-test-key" not in repr(policy)

    monkeypatch.setenv(KEY_ENV, "another-key-of-enough-bytes")
    assert policy.pseudonym_key() == b"another-key-of-enough-bytes"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(PolicyError, match=KEY_ENV):
        policy.pseudonym_key()


def test_a_policy_without_pseudonymise_needs_no_key(
    foundation_lake: FoundationLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    text = _variant("      user_id: pseudonymise\n", "      user_id: nullify\n")
    text = text.replace("  - name: users", "  - name: users_nullified", 1)

    policy = load_policy(write_policy(foundation_lake.root, text, name="nokey.yml"))

    assert not policy.needs_key
    with pytest.raises(PolicyError, match=f"the key environment variable {KEY_ENV} is not set"):
        policy.pseudonym_key()


def test_names_paths_and_numbers_at_the_edge_of_the_rules_are_accepted(foundation_lake: FoundationLake) -> None:
    lake = foundation_lake.lake
    text = _variant("  - name: events\n    path: events\n", f"  - name: {'e' * 128}\n    path: sub/../events\n")
    text = _variant(
        "  - name: users\n    path: users\n", f"  - name: users.v2-eu_1\n    path: {lake / 'users'}\n", text
    )
    text = _variant("  - name: consents\n    path: consents\n", "  - name: 0consents\n    path: ./consents/\n", text)
    text += (f"control: ops/dsr-control.v1/\nmax_attempts: 100\nclaim_ttl_minutes: 10080\ndue_days: 3650\n"
             f"exempt:\n  - {{path: geo_lookup, reason: x}}\n  - {{path: '{lake}/geo_lookup/', reason: y}}\n")

    policy = load_policy(write_policy(foundation_lake.root, text, name="edges.yml"))

    assert [t.name for t in policy.tables] == ["e" * 128, "users.v2-eu_1", "0consents"]
    assert [t.uri for t in policy.tables] == [str(lake / n) for n in ("events", "users", "consents")]
    assert policy.control_uri == str(lake / "ops" / "dsr-control.v1")
    assert (policy.max_attempts, policy.claim_ttl_minutes, policy.due_days) == (100, 10080, 3650)
    assert check_against_lake(policy)


def test_merge_keys_keep_their_override_semantics(foundation_lake: FoundationLake) -> None:
    text = (
        "lake: ./lake\n"
        "tables:\n"
        "  - &events {name: events, path: events, subject: user_id, erase: delete}\n"
        "  - <<: *events\n"
        "    name: consents\n"
        "    path: consents\n"
        "    erase: retain\n"
        "    reason: kept\n"
    )

    policy = load_policy(write_policy(foundation_lake.root, text, name="merge.yml"))

    assert [(t.name, t.path, t.erase) for t in policy.tables] == [
        ("events", "events", "delete"), ("consents", "consents", "retain")
    ]


@pytest.mark.parametrize("target", ["table", "exempt", "control"])
def test_a_symbolic_link_out_of_the_lake_is_refused(
    foundation_lake: FoundationLake, tmp_path: Path, target: str
) -> None:
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    (foundation_lake.lake / "escape").symlink_to(outside, target_is_directory=True)
    text = {
        "table": _variant("    path: events\n", "    path: escape\n"),
        "exempt": BASE_POLICY + "exempt:\n  - {path: escape, reason: x}\n",
        "control": BASE_POLICY + "control: escape\n",
    }[target]

    with pytest.raises(PolicyError, match=r"resolves outside the lake \(through a symbolic link\)"):
        load_policy(write_policy(foundation_lake.root, text, name="link.yml"))


S3_POLICY = """\
lake: s3://bucket/lake
exports: s3://bucket/exports
tables:
  - {name: events, path: PATH, subject: user_id, erase: delete}
"""


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("events", "s3://bucket/lake/events"),
        ("sales/orders", "s3://bucket/lake/sales/orders"),
        ("s3://bucket/lake/events", "s3://bucket/lake/events"),
        ("s3://bucket//lake//events/", "s3://bucket/lake/events"),
        ("./sales//orders/", "s3://bucket/lake/sales/orders"),
        ("s3a://bucket/lake/events", "s3a://bucket/lake/events"),
    ],
)
def test_on_s3_a_table_path_below_the_lake_is_accepted(tmp_path: Path, path: str, uri: str) -> None:
    policy = load_policy(write_policy(tmp_path, S3_POLICY.replace("PATH", path)))

    assert policy.tables[0].uri == uri


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../events", "has a '..' segment"),
        ("sales/../../events", "has a '..' segment"),
        ("s3://bucket/lake/../other", "has a '..' segment"),
        ("s3://bucket/lakehouse/events", "is outside the lake"),
        ("s3://bucket/other/events", "is outside the lake"),
        ("s3://other-bucket/lake/events", "is outside the lake"),
        ("gs://bucket/lake/events", "is outside the lake"),
        ("/tmp/events", "is outside the lake"),
        ("s3://bucket/lake", "is the lake root itself"),
        ("s3://bucket/lake//", "is the lake root itself"),
        ("./", "is the lake root itself"),
    ],
)
def test_on_s3_a_table_path_outside_the_lake_is_refused(tmp_path: Path, path: str, problem: str) -> None:
    bad = write_policy(tmp_path, S3_POLICY.replace("PATH", f"'{path}'"))

    with pytest.raises(PolicyError) as err:
        load_policy(bad)

    assert f"table 'events': path {path!r} {problem}" in str(err.value)


def test_on_s3_an_exempt_uri_outside_the_lake_is_refused(tmp_path: Path) -> None:
    ok = S3_POLICY.replace("PATH", "events") + "exempt:\n  - {path: 's3://bucket/lake/geo', reason: x}\n"
    assert load_policy(write_policy(tmp_path, ok)).exempt[0].path == "s3://bucket/lake/geo"

    bad = S3_POLICY.replace("PATH", "events") + "exempt:\n  - {path: 's3://bucket/geo', reason: x}\n"
    with pytest.raises(PolicyError, match="exempt path 's3://bucket/geo' is outside the lake"):
        load_policy(write_policy(tmp_path, bad, name="bad.yml"))


# --- the policy file itself ----------------------------------------------------------------------------------


def test_a_policy_that_is_not_utf8_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("lake: ./lake\n# r\u00e9sum\u00e9\ntables: []\n".encode("latin-1"))

    with pytest.raises(PolicyError) as err:
        load_policy(path)

    assert str(err.value) == f"policy {path}: not UTF-8 text (invalid byte at line 2); save it as UTF-8"


def test_a_directory_given_as_the_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy(tmp_path)

    assert str(err.value) == f"policy {tmp_path}: is a directory, not a policy file"


def test_an_unreadable_policy_is_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_policy(tmp_path, BASE_POLICY)

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(PolicyError) as err:
        load_policy(path)

    assert str(err.value) == f"policy {path}: cannot be read (Permission denied)"


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
