"""A policy table named in the Spark catalog (``table: schema.table``): the name is parsed strictly, ``path`` and
``table`` exclude each other, and resolution (dsr/core/policy_catalog.py) sets its location or refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsr.core.policy import load_policy
from dsr.core.policy_catalog import location_uri, outside_lake, refuse_unresolved, resolve, resolve_for
from dsr.errors import PolicyError
from tests.core.conftest import assert_policy_refused, variant
from tests.lakes import Lake, write_policy

_USERS = "  - name: users\n    path: users\n"


def _named(table: str) -> str:
    """SMALL_POLICY with users named in the catalog as ``table`` (a YAML scalar, written as given)."""
    return variant(_USERS, f"  - name: users\n    table: {table}\n")


@pytest.mark.parametrize(("written", "kept"), [
    ("users", "users"),
    ("crm.users", "crm.users"),
    ("main.crm.users", "main.crm.users"),
    ("_a1.B_2.c3", "_a1.B_2.c3"),
    ("'`my-catalog`.crm.users'", "`my-catalog`.crm.users"),
    ("'`sales eu`.`users`'", "`sales eu`.users"),
    ("'main.crm.`we``ird`'", "main.crm.`we``ird`"),
])
def test_a_catalog_name_of_one_to_three_parts_is_kept_unresolved(small_lake: Lake, written: str, kept: str) -> None:
    policy = load_policy(write_policy(small_lake.root, _named(written), name="cat.yml"))

    users = policy.table("users")
    assert users.catalog == kept
    assert (users.path, users.uri, users.resolved) == ("", "", False)
    assert policy.unresolved == (users,)
    assert all(t.resolved and t.catalog is None for t in policy.tables if t.name != "users")


BAD_NAMES = {
    "four parts": ("a.b.c.d", "4 parts"),
    "an empty part": ("crm..users", "part 2 is empty"),
    "a trailing dot": ("crm.users.", "part 3 is empty"),
    "a leading dot": ("'.users'", "part 1 is empty"),
    "a space in a part": ("'crm.my users'", "' ' after part 2"),
    "a space around a dot": ("'crm .users'", "' ' after part 1"),
    "a hyphen, not back-quoted": ("crm.my-users", "'-' after part 2"),
    "a digit first": ("crm.1users", "part 2 starts with '1'"),
    "a quote": ("\"crm.'users'\"", "part 2 starts with"),
    "a semicolon": ("'crm.users;drop'", "';' after part 2"),
    "an unclosed back-quote": ("'`crm.users'", "not closed"),
    "an empty back-quoted part": ("'crm.``'", "back-quoted part is empty"),
    "empty": ("''", "empty"),
    "not text": ("[crm, users]", "must be a catalog table name"),
    "a number": ("12", "must be a catalog table name"),
    "too long a part": ("crm." + "u" * 256, "longer than 255"),
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_a_bad_catalog_name_is_refused_in_one_line(small_lake: Lake, case: str) -> None:
    written, why = BAD_NAMES[case]
    assert_policy_refused(small_lake, _named(written), ["'users'", "'table'", why])


def test_path_and_table_together_are_refused(small_lake: Lake) -> None:
    text = variant(_USERS, "  - name: users\n    path: users\n    table: crm.users\n")
    assert_policy_refused(small_lake, text, ["'users'", "either 'path'", "'table'", "not both"])


def test_neither_path_nor_table_keeps_the_path_the_name(small_lake: Lake) -> None:
    """As before ``table:`` existed: scripts with such policies keep working."""
    policy = load_policy(write_policy(small_lake.root, variant(_USERS, "  - name: users\n"), name="np.yml"))

    assert policy.table("users").path == "users"
    assert policy.table("users").uri == str(small_lake.lake / "users")


# --- resolution -----------------------------------------------------------------------------------------


def test_resolution_sets_path_and_uri_to_the_catalog_location(small_lake: Lake, tmp_path: Path) -> None:
    policy = load_policy(write_policy(small_lake.root, _named("crm.users"), name="cat.yml"))
    asked: list[str] = []

    def locate(name: str) -> str:
        asked.append(name)
        return "file:" + str(tmp_path / "warehouse" / "users")

    resolved = resolve(policy, locate)

    users = resolved.table("users")
    assert asked == ["crm.users"]
    assert users.uri == users.path == str(tmp_path / "warehouse" / "users")
    assert users.catalog == "crm.users" and not resolved.unresolved
    assert outside_lake(resolved) == [users]
    assert [t.uri for t in resolved.tables if t.name != "users"] == [
        t.uri for t in policy.tables if t.name != "users"]


def test_a_location_inside_the_lake_is_not_outside_it(small_lake: Lake) -> None:
    policy = load_policy(write_policy(small_lake.root, _named("crm.users"), name="cat.yml"))

    resolved = resolve(policy, lambda name: str(small_lake.lake / "users"))

    assert outside_lake(resolved) == []


@pytest.mark.parametrize(("location", "why"), [
    ("dbfs:/user/hive/warehouse/users", "storage 'dbfs:'"),
    ("abfss://c@acct.dfs.core.windows.net/users", "storage 'abfss:'"),
    ("warehouse/users", "relative path"),
    ("file://otherhost/users", "no local absolute path"),
])
def test_a_location_dsr_cannot_read_is_refused(small_lake: Lake, location: str, why: str) -> None:
    policy = load_policy(write_policy(small_lake.root, _named("crm.users"), name="cat.yml"))

    with pytest.raises(PolicyError, match=why) as err:
        resolve(policy, lambda name: location)

    assert "'users'" in str(err.value) and "crm.users" in str(err.value) and "\n" not in str(err.value)


def test_a_location_on_the_control_folder_or_another_table_is_refused(small_lake: Lake) -> None:
    policy = load_policy(write_policy(small_lake.root, _named("crm.users"), name="cat.yml"))

    with pytest.raises(PolicyError, match="overlaps the control folder"):
        resolve(policy, lambda name: str(small_lake.lake / "_dsr" / "requests"))
    with pytest.raises(PolicyError, match="'events' and 'users' have the same location"):
        resolve(policy, lambda name: str(small_lake.lake / "events"))


def test_s3_locations_are_kept_as_uris() -> None:
    assert location_uri("s3://bucket/wh//users/") == "s3://bucket/wh/users"
    assert location_uri("s3a://bucket/wh/users") == "s3a://bucket/wh/users"
    assert location_uri("file:/tmp/wh/users") == "/tmp/wh/users"  # Hadoop's form
    with pytest.raises(ValueError, match="bucket"):
        location_uri("s3:///users")


def test_without_spark_a_catalog_table_is_refused_naming_the_engine(small_lake: Lake,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_ENGINE", raising=False)
    policy = load_policy(write_policy(small_lake.root, _named("crm.users"), name="cat.yml"))

    with pytest.raises(PolicyError, match=r"'users' is named in the Spark catalog \(crm.users\): dsr run .*"
                                          r"--engine spark"):
        resolve_for(policy, engine="delta-rs", remote=None, command="dsr run")
    with pytest.raises(PolicyError, match="--engine spark"):
        resolve_for(policy, engine=None, remote=None, command="dsr run")
    with pytest.raises(PolicyError, match="dsr residue"):
        refuse_unresolved(policy, "dsr residue")


def test_a_policy_without_catalog_tables_opens_no_session(small_lake: Lake) -> None:
    policy = load_policy(small_lake.policy_path)

    assert resolve_for(policy, engine="spark", remote="sc://127.0.0.1:1", command="dsr run") is policy
