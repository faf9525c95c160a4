"""Property-based: random small lakes and random request sets; after ``dsr run`` the invariants hold, checked
with plain pyarrow (``DeltaTable.to_pyarrow_table``, not dsr's reader):

- no erased key survives in a delete or anonymise table;
- every other row is unchanged, value for value; anonymised rows are as many as the subject's rows were;
- each export document holds exactly the subject's rows.

Lakes mix text and integer subject columns, partitioned and unpartitioned tables, NULL subjects and ids with
quotes, backslashes, non-ASCII letters and inner blanks.
"""

from __future__ import annotations

import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsr import steps
from dsr.core import control
from dsr.core.policy import check_against_lake, load_policy
from dsr.engines.deltars import DeltaRsEngine
from tests import expect, lakes
from tests.packages import document

KEY = "property-test-key-0123456789"
_LETTERS = "abcXYZ019'\"\\é中🙂ß- _."


def _norm(s: str) -> str:
    return unicodedata.normalize("NFKC", s).lower().strip()


text_ids = st.text(_LETTERS, min_size=1, max_size=8).map(str.strip).filter(
    lambda s: s != "" and not s.startswith("-"))
int_ids = st.integers(min_value=-5, max_value=10_000).map(str)


@st.composite
def lake_specs(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["string", "int64"]))
    pool = draw(st.lists(text_ids if kind == "string" else int_ids, min_size=2, max_size=6,
                         unique_by=_norm if kind == "string" else (lambda s: int(s))))
    absent_pool = [f"zz{i}q" if kind == "string" else str(20_000 + i) for i in range(2)]
    tables = []
    for i in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 25))
        subjects = [draw(st.one_of(st.sampled_from(pool), st.none())) for _ in range(n)]
        tables.append({
            "name": f"t{i}",
            "strategy": draw(st.sampled_from(["delete", "anonymise"])),
            "partitioned": draw(st.booleans()),
            "subjects": subjects,
            "days": [draw(st.sampled_from(["2026-01-01", "2026-01-02"])) for _ in range(n)],
            "notes": [draw(st.text("xyz é'", max_size=5)) for _ in range(n)],
            "files": draw(st.integers(1, 3)),
        })
    erase = draw(st.lists(st.sampled_from(pool + absent_pool), unique=True, max_size=4))
    export = draw(st.lists(st.sampled_from(pool + absent_pool), unique=True, max_size=3))
    return {"kind": kind, "tables": tables, "erase": erase, "export": export}


def _build(root: Path, spec: dict[str, Any]) -> Path:
    typ = pa.string() if spec["kind"] == "string" else pa.int64()
    entries = []
    for t in spec["tables"]:
        values = [None if s is None else (s if spec["kind"] == "string" else int(s)) for s in t["subjects"]]
        data = pa.table({
            "subject": pa.array(values, typ), "day": pa.array(t["days"], pa.string()),
            "note": pa.array(t["notes"], pa.string()), "n": pa.array(range(len(values)), pa.int64()),
        })
        step = max(1, (data.num_rows + t["files"] - 1) // t["files"])
        uri = str(root / "lake" / t["name"])
        for start in range(0, max(data.num_rows, 1), step):
            lakes.write_table(uri, data.slice(start, step), partition_by=["day"] if t["partitioned"] else None)
        entry = f"  - name: {t['name']}\n    path: {t['name']}\n    subject: subject\n    erase: {t['strategy']}\n"
        if t["strategy"] == "anonymise":
            entry += "    mask:\n      subject: pseudonymise\n      note: {redact: \"[erased]\"}\n"
        entries.append(entry)
    head = "lake: ./lake\nexports: ./exports\npseudonym_key_env: DSR_PSEUDONYM_KEY\ntables:\n"
    return lakes.write_policy(root, head + "".join(entries))


def _is(value: Any, sid: str) -> bool:
    return value is not None and str(value) == sid


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(spec=lake_specs())
def test_after_a_run_the_invariants_hold(spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSR_PSEUDONYM_KEY", KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    root = Path(tempfile.mkdtemp(prefix="dsr-prop-"))
    try:
        policy = load_policy(_build(root, spec))
        check_against_lake(policy)
        before = {t.name: lakes.rows(t.uri) for t in policy.tables}
        ids = {("erase", s): control.submit(policy, "erase", s)[0] for s in spec["erase"]}
        ids |= {("export", s): control.submit(policy, "export", s)[0] for s in spec["export"]}
        report = steps.run(policy, DeltaRsEngine())
        assert report.exit_code == 0, report.as_dict()
        erased = set(spec["erase"])
        for t in policy.tables:
            after = lakes.rows(t.uri)
            assert not [r for r in after if any(_is(r["subject"], s) for s in erased)], t.name
            others = [r for r in before[t.name] if not any(_is(r["subject"], s) for s in erased)]
            mine = [r for r in before[t.name] if any(_is(r["subject"], s) for s in erased)]
            if t.erase == "delete":
                assert expect.multiset(after) == expect.multiset(others), t.name
            else:  # the subject's rows carry the pseudonym and the redaction; nothing else changed
                psn = {s: expect.pseudonym(KEY.encode(), s, spec["kind"]) for s in erased}
                masked = [{**r, "subject": psn[str(r["subject"])], "note": "[erased]"} for r in mine]
                assert expect.multiset(after) == expect.multiset(others + masked), t.name
        for (kind, sid), rid in ids.items():
            req = control.list_requests(policy, ids=[rid])[0]
            assert req.status == "completed", (kind, req.error)
            if kind == "export":
                doc = document(req.export_uri)
                assert doc["subject_id"] == sid
                for t in policy.tables:
                    expected = [r for r in before[t.name] if _is(r["subject"], sid)]
                    rows = expect.exported(doc["tables"][t.name], t.subject)
                    assert expect.multiset(rows) == expect.multiset(expected), (t.name, sid)
    finally:
        shutil.rmtree(root, ignore_errors=True)
