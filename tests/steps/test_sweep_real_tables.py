"""A sweep on every real table (Spark, Databricks, delta-rs; ``tests/real_tables.py``) added to the policy after
an erasure: its first sweep finds the person by digest whatever the layout (column mapping's physical names,
deletion vectors, partition values, checkpoints), erases the rows, and leaves every other row as it was; or it
refuses the table before writing a byte."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dsr.core import gate
from dsr.delta import access
from dsr.delta.support import DELTA_RS
from tests import expect, lakes
from tests import real_tables as rt
from tests.invoke import dsr
from tests.leaks import Leaks

TABLES = rt.table_dirs()


def _is_subject(case: rt.Case, value: Any) -> bool:
    return value is not None and value == case.value


@pytest.mark.parametrize("source", TABLES, ids=[p.name for p in TABLES])
def test_a_real_table_added_after_an_erasure_is_swept_for_it(tmp_path: Path, source: Path) -> None:
    case = rt.case_for(source)
    assert case is not None
    if case.value is None or not case.castable:
        pytest.skip(f"{source.name}: no text or integer subject value to erase")
    root = tmp_path / "w"
    lakes.write_table(root / "lake" / "anchor", {"user_id": ["someone-else"]})
    head = f"""\
        lake: ./lake
        exports: ./exports
        pseudonym_key_env: {lakes.KEY_ENV}
        tables:
          - {{name: anchor, path: anchor, subject: user_id, erase: delete}}
        """
    lake = lakes.Lake(root, lakes.write_policy(root, head), env={lakes.KEY_ENV: lakes.KEY})
    assert dsr("--policy", str(lake.policy_path), "request", "erase", case.subject_id, env=lake.env).returncode == 0
    assert dsr("--policy", str(lake.policy_path), "run", env=lake.env).returncode == 0

    shutil.copytree(source, root / "lake" / case.name)
    lake.policy_path.write_text(textwrap.dedent(head) + f"  - name: {case.name}\n    path: {case.name}\n"
                                f"    subject: {json.dumps(case.subject)}\n    erase: delete\n", encoding="utf-8")
    uri = str(root / "lake" / case.name)
    before, tree, info = lakes.rows(uri), lakes.files(Path(uri)), access.table_info(uri)
    out = dsr("--policy", str(lake.policy_path), "sweep", "--json", env=lake.env)
    found = json.loads(out.stdout)["tables"] if out.stdout.strip().startswith("{") else []
    table = next((t for t in found if t["table"] == case.name), None)
    spec = next(t for t in lake_policy(lake).tables if t.name == case.name)
    if not gate.check_table(spec, DELTA_RS).ok:
        assert out.returncode in (1, 2) and lakes.files(Path(uri)) == tree, out.stdout + out.stderr
        assert _named(case, out.stdout + out.stderr) == []
        return
    assert out.returncode == 0, out.stdout + out.stderr
    assert table is not None and table["mode"] == "full" and table["success"]
    mine = [r for r in before if _is_subject(case, r[case.subject])]
    after = lakes.rows(uri)
    assert table["rows"] == len(mine) > 0
    assert expect.multiset(after) == expect.multiset([r for r in before if not _is_subject(case, r[case.subject])])
    assert access.table_info(uri).fingerprint() == info.fingerprint()
    assert _named(case, out.stdout) == []


def _named(case: rt.Case, text: str) -> list[str]:
    """The subject id in the output (a number cannot be told from the counts there: text ids only)."""
    return [] if case.subject_id.lstrip("-").isdigit() else Leaks([case.subject_id]).found_in(text)


def lake_policy(lake: lakes.Lake) -> Any:
    from dsr.core.policy import load_policy

    return load_policy(lake.policy_path)
