"""dsr/errors.py: the one scrubber of subject ids in texts dsr did not write (``scrub``), by whole tokens.

The erased id ``1`` or ``2`` must not eat the digit of a feature name (``icebergCompatV1``) or of a temporary
folder (``pytest-2``, ``tmp2k9x``): a table refused for ``icebergCompatV1`` says so in the request's error.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, TableFeatures

from dsr.errors import scrub
from tests import lakes
from tests.invoke import dsr


@pytest.mark.parametrize(("text", "ids", "expected"), [
    ("unsupported Delta feature(s): icebergCompatV2 (writer feature)", ["2"],
     "unsupported Delta feature(s): icebergCompatV2 (writer feature)"),
    ("cannot open /tmp/pytest-of-ci/pytest-2/tmp2k9x/lake/t_2/part-00002-a.c000.snappy.parquet", [2],
     "cannot open /tmp/pytest-of-ci/pytest-2/tmp2k9x/lake/t_2/part-00002-a.c000.snappy.parquet"),
    ("Cannot cast string '2' to Int32; keys [2, 3]; at user_id=2/x; value 2.", ["2"],
     "Cannot cast string '<subject>' to Int32; keys [<subject>, 3]; at user_id=<subject>/x; value <subject>."),
    ("amount 1.25 and v1.2, not 1 of 12", ["1", "2"], "amount 1.25 and v1.2, not <subject> of 12"),
    ("keys u10, u1 and 1003 not found", ["u1", "u10", 1003, None, ""],
     "keys <subject>, <subject> and <subject> not found"),
    ("row alice@example.org failed for x-77 (x-770, ax-77)", ["alice@example.org", "x-77"],
     "row <subject> failed for <subject> (x-770, ax-77)"),
    ("José's row: 'José'", ["José"], "<subject>'s row: '<subject>'"),
    ("nothing to scrub", [], "nothing to scrub"),
])
def test_scrub_replaces_whole_tokens_only(text: str, ids: list[object], expected: str) -> None:
    assert scrub(text, ids) == expected


def test_a_table_refused_for_icebergcompatv1_says_so_when_the_erased_id_is_1(tmp_path: Path) -> None:
    """A real table (delta-rs lists icebergCompatV1 among its writer features) and an erasure of subject 1 in
    a lake under a folder whose name holds the digit: the refusal recorded with the request names the feature
    whole (no leak scan here: "1 failed" holds the id as a count)."""
    root = tmp_path / "tmp-1" / "w1"
    uri = root / "lake" / "accounts"
    lakes.write_table(uri, pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "plan": ["a", "b", "c"]}))
    DeltaTable(str(uri)).alter.add_feature(TableFeatures.IcebergCompatV1, allow_protocol_versions_increase=True)
    policy = lakes.write_policy(root, "lake: ./lake\nexports: ./exports\ntables:\n  - name: accounts\n"
                                      "    path: accounts\n    subject: user_id\n    erase: delete\n")
    env = {"DSR_POLICY": str(policy)}
    rid = dsr("request", "erase", "1", env=env).stdout.strip()
    run = dsr("run", env=env)
    assert run.returncode == 1
    failed = dsr("requests", "--status", "failed", env=env).stdout
    receipt = dsr("receipt", rid, env=env).stdout
    for text in (run.stdout, failed, receipt):
        assert "icebergCompatV1 (writer feature): delta-rs cannot delete it" in text, text
        assert "<subject>" not in text
