"""dsr/core/policy_paths.py: table names are identifiers, and table, exempt and control paths stay under the lake
(relative to it, or absolute paths and URIs below it; '..', symbolic links and other storage refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsr.core.policy import check_against_lake, load_policy
from dsr.errors import PolicyError
from tests.core.conftest import assert_policy_refused, variant
from tests.lakes import SMALL_POLICY, Lake, write_policy

# Each case: the policy text, and what the one-line message must name.
PATH_ERRORS = {
    # issue 9: a table name is an identifier, never a path
    "a table name that is an absolute path": (
        variant("  - name: events\n", "  - name: /some/dir/OUTSIDE\n"),
        ["tables entry 1", "'name' '/some/dir/OUTSIDE' is not a table name", "at most 128 characters"],
    ),
    "a table name that is ..": (variant("  - name: events\n", "  - name: ..\n"), ["tables entry 1", "'..'"]),
    "a table name that is .": (variant("  - name: events\n", "  - name: .\n"), ["tables entry 1", "'.'"]),
    "a table name with a separator": (
        variant("  - name: events\n", "  - name: sales/orders\n"), ["'sales/orders' is not a table name"]
    ),
    "a table name with a backslash": (
        variant("  - name: events\n", "  - name: 'a\\b'\n"), ["is not a table name"]
    ),
    "a table name with a space": (variant("  - name: events\n", "  - name: my events\n"), ["not a table name"]),
    "a table name starting with a dot": (variant("  - name: events\n", "  - name: .hidden\n"), ["not a table name"]),
    "a table name starting with a dash": (variant("  - name: events\n", "  - name: -x\n"), ["not a table name"]),
    "a table name of 129 characters": (
        variant("  - name: events\n", f"  - name: {'n' * 129}\n"), ["not a table name"]
    ),
    # issue 9: what dsr writes stays under the lake
    "control above the lake": (
        SMALL_POLICY + "control: ../../x\n", ["'control' must be a relative folder", "'../../x'"]
    ),
    "control with a .. inside": (SMALL_POLICY + "control: a/../b\n", ["'control' must be a relative folder"]),
    "control as an absolute path": (SMALL_POLICY + "control: /var/dsr\n", ["'control' must be a relative folder"]),
    "control as a URI": (SMALL_POLICY + "control: s3://bucket/dsr\n", ["'control' must be a relative folder"]),
    "control with an empty segment": (SMALL_POLICY + "control: a//b\n", ["'control' must be a relative folder"]),
    "control as a number": (SMALL_POLICY + "control: 5\n", ["'control' must be a relative folder"]),
    "a table path above the lake": (
        variant("    path: events\n", "    path: ../outside\n"),
        ["table 'events'", "path '../outside' leaves the lake through '..'"],
    ),
    "a table path that climbs out after going in": (
        variant("    path: events\n", "    path: events/../../x\n"), ["table 'events'", "leaves the lake"]
    ),
    "a table path outside the lake": (
        variant("    path: events\n", "    path: /some/dir/OUTSIDE\n"),
        ["table 'events'", "path '/some/dir/OUTSIDE' is outside the lake"],
    ),
    "a table path on another storage": (
        variant("    path: events\n", "    path: s3://bucket/events\n"), ["table 'events'", "is outside the lake"]
    ),
    "a table path that is a file URI": (
        variant("    path: events\n", "    path: file:///tmp/events\n"), ["table 'events'", "is outside the lake"]
    ),
    "a table path that is the lake itself": (
        variant("    path: events\n", "    path: .\n"), ["table 'events'", "is the lake root itself"]
    ),
    "a table path inside the control folder": (
        variant("    path: events\n", "    path: _dsr/requests\n"), ["table 'events'", "control folder '_dsr'"]
    ),
    "a table path holding the control folder": (
        SMALL_POLICY + "control: events/_dsr\n", ["table 'events'", "control folder 'events/_dsr'"]
    ),
    "an exempt path above the lake": (
        SMALL_POLICY + "exempt:\n  - {path: ../geo, reason: x}\n", ["exempt path '../geo' leaves the lake"]
    ),
    "an exempt path outside the lake": (
        SMALL_POLICY + "exempt:\n  - {path: /etc, reason: x}\n", ["exempt path '/etc' is outside the lake"]
    ),
}


@pytest.mark.parametrize("case", sorted(PATH_ERRORS))
def test_a_bad_policy_is_refused_naming_what_is_wrong(small_lake: Lake, case: str) -> None:
    assert_policy_refused(small_lake, *PATH_ERRORS[case])


def test_names_paths_and_numbers_at_the_edge_of_the_rules_are_accepted(small_lake: Lake) -> None:
    lake = small_lake.lake
    text = variant("  - name: events\n    path: events\n", f"  - name: {'e' * 128}\n    path: sub/../events\n")
    text = variant(
        "  - name: users\n    path: users\n", f"  - name: users.v2-eu_1\n    path: {lake / 'users'}\n", text
    )
    text = variant("  - name: consents\n    path: consents\n", "  - name: 0consents\n    path: ./consents/\n", text)
    text += (f"control: ops/dsr-control.v1/\nmax_attempts: 100\nclaim_ttl_minutes: 10080\ndue_days: 3650\n"
             f"exempt:\n  - {{path: geo_lookup, reason: x}}\n  - {{path: '{lake}/geo_lookup/', reason: y}}\n")

    policy = load_policy(write_policy(small_lake.root, text, name="edges.yml"))

    assert [t.name for t in policy.tables] == ["e" * 128, "users.v2-eu_1", "0consents"]
    assert [t.uri for t in policy.tables] == [str(lake / n) for n in ("events", "users", "consents")]
    assert policy.control_uri == str(lake / "ops" / "dsr-control.v1")
    assert (policy.max_attempts, policy.claim_ttl_minutes, policy.due_days) == (100, 10080, 3650)
    assert check_against_lake(policy)


@pytest.mark.parametrize("target", ["table", "exempt", "control"])
def test_a_symbolic_link_out_of_the_lake_is_refused(
    small_lake: Lake, tmp_path: Path, target: str
) -> None:
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    (small_lake.lake / "escape").symlink_to(outside, target_is_directory=True)
    text = {
        "table": variant("    path: events\n", "    path: escape\n"),
        "exempt": SMALL_POLICY + "exempt:\n  - {path: escape, reason: x}\n",
        "control": SMALL_POLICY + "control: escape\n",
    }[target]

    with pytest.raises(PolicyError, match=r"resolves outside the lake \(through a symbolic link\)"):
        load_policy(write_policy(small_lake.root, text, name="link.yml"))


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


def test_relative_paths_are_relative_to_the_policy_file_not_the_working_dir(
    small_lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.parent)

    policy = load_policy(small_lake.policy_path)

    assert policy.lake == str(small_lake.lake)
    assert check_against_lake(policy)


def test_a_file_uri_lake_is_the_local_folder(small_lake: Lake) -> None:
    """``lake: file:///abs/path`` names the local folder; before, it was joined as a relative path and the control
    table landed under ``./file:/...``."""
    text = SMALL_POLICY.replace("lake: ./lake", f"lake: file://{small_lake.lake}").replace(
        "exports: ./exports", f"exports: file://localhost{small_lake.exports}")
    policy = load_policy(write_policy(small_lake.root, text, name="uri.yml"))
    check_against_lake(policy)

    assert policy.lake == str(small_lake.lake.resolve()) and policy.exports == str(small_lake.exports.resolve())
    assert policy.requests_uri.startswith(str(small_lake.lake.resolve()) + "/")


@pytest.mark.parametrize("uri", ["file://otherhost/data/lake", "file:relative/lake"])
def test_a_file_uri_naming_another_host_or_no_absolute_path_is_refused(small_lake: Lake, uri: str) -> None:
    text = SMALL_POLICY.replace("lake: ./lake", f"lake: {uri}")
    with pytest.raises(PolicyError, match="'lake' must be file:///absolute/path"):
        load_policy(write_policy(small_lake.root, text, name="uri.yml"))
