"""The README's examples stay true: its policy parses, its commands exist with the flags it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsr.cli.main import _parser
from dsr.core.policy import load_policy

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_readme_policy_example_is_a_valid_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = README.split("## The policy file", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    (tmp_path / "dsr.yml").write_text(block, encoding="utf-8")
    monkeypatch.setenv("DSR_PSEUDONYM_KEY", "readme-example-key-0123")
    policy = load_policy(tmp_path / "dsr.yml")
    assert [t.erase for t in policy.tables] == ["delete", "anonymise", "retain"]
    assert policy.exempt[0].path == "geo_lookup"


@pytest.mark.parametrize("line", [
    ln.split("#")[0].strip()
    for ln in README.split("## Filing and processing requests", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    .splitlines()
    if ln.startswith("dsr ")
])
def test_every_dsr_command_in_the_readme_parses(line: str) -> None:
    words = line.split()[1:]
    # replace placeholders and optional-argument brackets by concrete values
    text = " ".join(words).replace("REQUEST_ID", "req_x").replace("sc://HOST:PORT", "sc://h:1")
    text = re.sub(r"\[--status [^\]]+\]", "--status failed", text)
    text = re.sub(r"\[--engine [^\]]+\]", "--engine spark", text)
    text = re.sub(r"\[([^\]|]+?) \|[^\]]*\]", r"\1", text)  # [A | B | C]: the first choice
    text = text.replace("--since-version V", "--since-version 3").replace("NAME ...", "NAME")
    text = text.replace("[", "").replace("]", "")
    _parser().parse_args(text.split())


def test_the_supported_tables_matrix_is_what_the_engines_declare() -> None:
    from dsr.delta.support import DELETE, DELTA_RS, DELTA_SPARK, READ, READER, SAIL, UPDATE

    section = README.split("## Supported tables", 1)[1].split("\nNotes:", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| `")]
    assert len(rows) >= 19
    seen = set()
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        feature = cells[0].split("`")[1]
        seen.add(feature)
        values = [None if c == "—" else c == "yes" for c in cells[1:]]
        assert values[0] in (None, READER.handles(feature, READ)), feature
        listed = "listed as a writer feature, switched off" in cells[0]  # handled unless refused when listed
        for i, support in enumerate((DELTA_RS, SAIL, DELTA_SPARK)):
            delete, update = values[1 + 2 * i], values[2 + 2 * i]
            if listed:
                assert delete == update == (feature not in support.refuses_listed), (feature, support.name)
                continue
            assert delete in (None, support.handles(feature, DELETE)), (feature, support.name)
            assert update == support.handles(feature, UPDATE), (feature, support.name)
    refused_listed = {f for s in (DELTA_RS, SAIL, DELTA_SPARK) for f in s.refuses_listed}
    assert refused_listed <= {r.split("`")[1] for r in rows if "listed as a writer feature, switched off" in r}
    declared = set(DELTA_RS.features) | set(SAIL.features) | set(DELTA_SPARK.features) | set(READER.features)
    assert declared - {"variantType-preview", "typeWidening-preview"} <= seen


def test_the_number_ranges_in_the_readme_are_the_policy_s() -> None:
    """Every range README gives for a policy number, in the commented example and in the list of checks, is the
    one the policy enforces (issue 21: due_days read 0-3650 in one place and 1-3650 in the other)."""
    from dsr.core.policy_parse import _INT_RANGES

    enforced = {name: (low, high) for name, _, low, high in _INT_RANGES}
    example = README.split("## The policy file", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    example = "\n".join(line for line in example.splitlines() if "notify:" not in line)  # its own keys
    found = [(m[0], (int(m[1]), int(m[2]))) for m in re.findall(r"(\w+): \d+ \((\d+)-(\d+)[;)]", example)]
    checks = README.split("numbers out of range (", 1)[1].split(")", 1)[0]
    found += [(m[0], (int(m[1]), int(m[2]))) for m in re.findall(r"`(\w+)`\s+(\d+)–(\d+)", checks)]
    assert {name for name, _ in found} == set(enforced)
    assert len(found) == 2 * len(enforced)  # each in both places
    for name, span in found:
        assert span == enforced[name], name


def test_the_backfill_summary_the_readme_shows_is_what_sweep_and_the_dag_print() -> None:
    """The README quotes the summary lines of a backfill: they are what ``table_line`` and ``total_line`` (the
    one wording of ``dsr sweep`` and of the ``dsr_backfill`` summary task) print for those counts."""
    from dsr.cli.sweep import table_line, total_line

    section = README.split("### Sweeps", 1)[1].split("## Export delivery", 1)[0]
    shown = section.split("read the `summary` task's log", 1)[1].split("```", 2)[1].strip("\n").splitlines()
    events = {"table": "events", "strategy": "delete", "mode": "full", "since_version": None, "files_live": 2,
              "files_scanned": 2, "files_matched": 1, "rows": 2, "entries": 1, "entries_matched": 1}
    assert shown == [table_line(events, True), total_line("swp_x", 1, 2, True)]
    done = total_line("swp_0123456789abcdef", 1, 2, False)
    assert f"`{done}`" in section
