"""dsr/core/coverage.py: which tables of the lake hold personal data and are neither covered nor exempt."""

from __future__ import annotations

from pathlib import Path

from dsr.core.coverage import uncovered_tables
from dsr.core.policy import Policy, load_policy
from tests.lakes import SMALL_POLICY, Lake, write_policy, write_table


def test_check_ignores_tables_without_a_subject_like_column_and_the_control_tables(
    small_lake: Lake,
) -> None:
    from dsr.core import control

    policy = load_policy(small_lake.policy_path)
    control.submit(policy, "erase", "u1")  # creates _dsr/requests and _dsr/audit

    assert uncovered_tables(policy) == []


def test_a_subject_like_column_matches_case_insensitively(small_lake: Lake) -> None:
    write_table(small_lake.lake / "crm", {"User_ID": ["u1"], "note": ["hi"]})

    assert uncovered_tables(load_policy(small_lake.policy_path)) == [("crm", ["User_ID"])]


def test_subject_columns_widen_what_counts_as_personal(small_lake: Lake) -> None:
    write_table(small_lake.lake / "tickets", {"customer_ref": ["c1"], "body": ["..."]})
    policy = load_policy(small_lake.policy_path)
    assert uncovered_tables(policy) == []

    wider = write_policy(small_lake.root, SMALL_POLICY + "subject_columns: [customer_ref]\n", name="wide.yml")

    assert uncovered_tables(load_policy(wider)) == [("tickets", ["customer_ref"])]


def test_an_exempt_entry_may_use_an_absolute_path(small_lake: Lake) -> None:
    orders = write_table(small_lake.lake / "orders", {"user_id": ["u1"]})
    text = SMALL_POLICY + f'exempt:\n  - {{path: "{orders}", reason: "test data"}}\n'

    policy = load_policy(write_policy(small_lake.root, text, name="abs.yml"))

    assert policy.exempt[0].path == str(orders)
    assert uncovered_tables(policy) == []


# --- tables named in the Spark catalog (issue 22, item 3) ------------------------------------------------------


def _users_by_name(lake: Lake, location: str) -> Policy:
    """The small lake's policy with users named ``crm.users`` in the catalog, resolved to ``location``."""
    from dsr.core.policy_catalog import resolve

    text = SMALL_POLICY.replace("    path: users\n", "    table: crm.users\n", 1)
    return resolve(load_policy(write_policy(lake.root, text, name="cat.yml")), lambda name: location)


def test_a_catalog_table_inside_the_lake_counts_as_covered(small_lake: Lake) -> None:
    assert uncovered_tables(_users_by_name(small_lake, "file://" + str(small_lake.lake / "users"))) == []


def test_below_a_catalog_location_outside_the_lake_a_nested_personal_table_must_be_covered(
    small_lake: Lake, tmp_path: Path
) -> None:
    import shutil

    outside = tmp_path / "warehouse" / "users"
    shutil.copytree(small_lake.lake / "users", outside)
    write_table(outside / "backup" / "old", {"user_id": ["u1"]})
    write_table(outside / "notes", {"text": ["not personal"]})
    write_table(tmp_path / "warehouse" / "beside", {"user_id": ["u1"]})  # the catalog's, not searched
    policy = _users_by_name(small_lake, str(outside))

    missing = uncovered_tables(policy)

    # the lake's own users folder is no longer named by the policy: found there as uncovered too
    assert missing == sorted([(str(outside / "backup" / "old"), ["user_id"]), ("users", ["user_id"])])
