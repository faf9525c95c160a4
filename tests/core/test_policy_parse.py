"""dsr/core/policy_parse.py: the fields of the policy (top-level keys, tables, masks, reasons, exempt entries,
number ranges, the key variable's name) are validated, and every mistake is refused with one clear line."""

from __future__ import annotations

import pytest

from dsr.core.masks import Mask
from dsr.core.policy import load_policy
from tests.core.conftest import assert_policy_refused, variant
from tests.lakes import SMALL_POLICY, Lake, write_policy

# Each case: the policy text, and what the one-line message must name.
LOAD_ERRORS = {
    "unknown erase strategy": (
        variant("    erase: delete\n", "    erase: shred\n"),
        ["'events'", "'shred'", "delete | anonymise | retain"],
    ),
    "unknown mask": (
        variant("      email: nullify\n", "      email: scramble\n"),
        ["'users'", "'email'", "'scramble'"],
    ),
    "unknown mask given as a mapping": (
        variant("      full_name: {redact: \"[erased]\"}\n", "      full_name: {shuffle: 3}\n"),
        ["'users'", "'full_name'", "'shuffle'"],
    ),
    "anonymise leaving the subject column unmasked": (
        variant("      user_id: pseudonymise\n", ""),
        ["'users'", "'user_id'", "unmasked"],
    ),
    "anonymise masking the subject with a constant": (
        variant("      user_id: pseudonymise\n", "      user_id: {redact: \"x\"}\n"),
        ["'users'", "'user_id'", "pseudonymise or nullify"],
    ),
    "retain without a reason": (
        variant('    reason: "GDPR Art. 7(1): proof of consent"\n', ""),
        ["'consents'", "'reason'", "retain"],
    ),
    "retain with a blank reason": (
        variant('    reason: "GDPR Art. 7(1): proof of consent"\n', '    reason: "  "\n'),
        ["'consents'", "'reason'"],
    ),
    "duplicate table names": (
        variant("  - name: consents\n    path: consents\n", "  - name: events\n    path: consents\n"),
        ["'events'", "duplicate"],
    ),
    "two tables on one path": (
        variant("  - name: consents\n    path: consents\n", "  - name: consents\n    path: events\n"),
        ["'events'", "'consents'", "same path"],
    ),
    "unknown top-level key": (SMALL_POLICY + "tabels: []\n", ["'tabels'"]),
    "unknown table key": (
        variant("    erase: delete\n", "    erase: delete\n    subjet: x\n"),
        ["'events'", "'subjet'"],
    ),
    "a mask on a table that deletes": (
        variant("    erase: delete\n", "    erase: delete\n    mask: {page: nullify}\n"),
        ["'events'", "'mask'", "anonymise"],
    ),
    "no tables": ("lake: ./lake\ntables: []\n", ["'tables'"]),
    "a non-text key next to an unknown one": (SMALL_POLICY + "1: x\ntabels: y\n", ["unknown key"]),
    "an exempt entry with an unknown key": (
        SMALL_POLICY + "exempt:\n  - {path: geo_lookup, reason: x, paht: y}\n", ["unknown key 'paht'"]
    ),
    # issue 9: numbers within range (10^12 minutes or days overflowed the date arithmetic)
    "due_days of 10^12": (
        SMALL_POLICY + "due_days: 1000000000000\n", ["'due_days' must be a whole number from 0 to 3650"]
    ),
    "due_days of 3651": (SMALL_POLICY + "due_days: 3651\n", ["'due_days'", "from 0 to 3650"]),
    "due_days of -1": (SMALL_POLICY + "due_days: -1\n", ["'due_days'", "from 0 to 3650"]),
    "claim_ttl_minutes of 10^12": (
        SMALL_POLICY + "claim_ttl_minutes: 1000000000000\n",
        ["'claim_ttl_minutes' must be a whole number from 1 to 10080"],
    ),
    "claim_ttl_minutes of 10081": (SMALL_POLICY + "claim_ttl_minutes: 10081\n", ["'claim_ttl_minutes'", "1 to 10080"]),
    "max_attempts of 101": (
        SMALL_POLICY + "max_attempts: 101\n", ["'max_attempts' must be a whole number from 1 to 100"]
    ),
    "max_attempts of 0": (SMALL_POLICY + "max_attempts: 0\n", ["'max_attempts'", "from 1 to 100"]),
    "a negative purge window": (SMALL_POLICY + "purge_after_hours: -1\n", ["'purge_after_hours'", "from 0 to 87600"]),
    "an export ttl of 0 days": (SMALL_POLICY + "export_ttl_days: 0\n", ["'export_ttl_days'", "from 1 to 3650"]),
    "a table's purge window as text": (
        variant("    erase: delete\n", "    erase: delete\n    purge_after_hours: soon\n"),
        ["table 'events'", "'purge_after_hours' must be a whole number from 0 to 87600"],
    ),
    # issue 21: a purge window on a retain table was ignored (nothing of it is ever purged)
    "a purge window on a retain table": (
        variant('    reason: "GDPR Art. 7(1): proof of consent"\n',
                '    reason: "GDPR Art. 7(1): proof of consent"\n    purge_after_hours: 24\n'),
        ["table 'consents'", "'purge_after_hours'", "erase 'retain'"],
    ),
    "max_attempts as text": (SMALL_POLICY + "max_attempts: lots\n", ["'max_attempts'", "from 1 to 100"]),
    "a key variable that is not a variable name": (
        variant("pseudonym_key_env: DSR_PSEUDONYM_KEY\n", "pseudonym_key_env: \"A=B\"\n"),
        ["'pseudonym_key_env' must name an environment variable"],
    ),
}


@pytest.mark.parametrize("case", sorted(LOAD_ERRORS))
def test_a_bad_policy_is_refused_naming_what_is_wrong(small_lake: Lake, case: str) -> None:
    assert_policy_refused(small_lake, *LOAD_ERRORS[case])


def test_plain_redact_means_the_default_constant(small_lake: Lake) -> None:
    text = variant("      full_name: {redact: \"[erased]\"}\n", "      full_name: redact\n")

    policy = load_policy(write_policy(small_lake.root, text, name="redact.yml"))

    assert policy.table("users").mask_map["full_name"] == Mask("redact", "[erased]")


def test_purge_windows_default_to_a_week_and_a_table_may_set_its_own(small_lake: Lake) -> None:
    text = variant("    erase: delete\n", "    erase: delete\n    purge_after_hours: 0\n") + "purge_after_hours: 48\n"
    policy = load_policy(write_policy(small_lake.root, text, name="windows.yml"))
    assert policy.purge_after_hours == 48
    assert policy.purge_window_hours(policy.table("events")) == 0
    assert policy.purge_window_hours(policy.table("users")) == 48
    assert load_policy(small_lake.policy_path).purge_after_hours == 168
