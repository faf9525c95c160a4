"""dsr/core/policy_yaml.py: reading the policy file (UTF-8 text, valid YAML, no duplicate key anywhere, merge
keys kept); every way it can be unreadable is one line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsr.core.policy import load_policy
from dsr.errors import PolicyError
from tests.core.conftest import assert_policy_refused, variant
from tests.lakes import SMALL_POLICY, Lake, write_policy

# Each case: the policy text, and what the one-line message must name.
YAML_ERRORS = {
    "not YAML": ("lake: ./lake\ntables: [\n", ["not valid YAML", "line"]),
    "a date that does not exist": (SMALL_POLICY + "due_days: 2024-02-30\n", ["not valid YAML at line 25"]),
    # issue 9: a key YAML would silently overwrite (the last one wins) is an error, wherever it is
    "a second top-level tables": (
        SMALL_POLICY + "tables:\n  - {name: other, path: other, subject: user_id, erase: delete}\n",
        ["duplicate key 'tables' at line 25 (first at line 4)"],
    ),
    "a second top-level lake": (
        SMALL_POLICY + "lake: /elsewhere\n", ["duplicate key 'lake' at line 25 (first at line 1)"]
    ),
    "a second erase in a table": (
        variant("    erase: delete\n", "    erase: delete\n    erase: retain\n"),
        ["duplicate key 'erase' at line 9 (first at line 8)"],
    ),
    "a column masked twice": (
        variant("      email: nullify\n", "      email: nullify\n      email: {redact: x}\n"),
        ["duplicate key 'email' at line 16 (first at line 15)"],
    ),
    "a nested duplicate": (
        variant("      full_name: {redact: \"[erased]\"}\n", "      full_name: {redact: \"a\", redact: \"b\"}\n"),
        ["duplicate key 'redact' at line 16 (first at line 16)"],
    ),
    "a duplicate in a flow table entry": (
        SMALL_POLICY + "  - {name: t1, path: t1, subject: user_id, name: t2, erase: delete}\n",
        ["duplicate key 'name' at line 25"],
    ),
    "a duplicate in an exempt entry": (
        SMALL_POLICY + "exempt:\n  - path: geo_lookup\n    reason: a\n    reason: b\n",
        ["duplicate key 'reason' at line 28 (first at line 27)"],
    ),
}


@pytest.mark.parametrize("case", sorted(YAML_ERRORS))
def test_a_bad_policy_is_refused_naming_what_is_wrong(small_lake: Lake, case: str) -> None:
    assert_policy_refused(small_lake, *YAML_ERRORS[case])


def test_merge_keys_keep_their_override_semantics(small_lake: Lake) -> None:
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

    policy = load_policy(write_policy(small_lake.root, text, name="merge.yml"))

    assert [(t.name, t.path, t.erase) for t in policy.tables] == [
        ("events", "events", "delete"), ("consents", "consents", "retain")
    ]


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
    path = write_policy(tmp_path, SMALL_POLICY)

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(PolicyError) as err:
        load_policy(path)

    assert str(err.value) == f"policy {path}: cannot be read (Permission denied)"


def test_a_missing_policy_file_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="--policy FILE or set DSR_POLICY"):
        load_policy(tmp_path / "absent.yml")
