"""The README's examples stay true: its policy parses, its commands exist with the flags it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsr.cli import _parser
from dsr.policy import load_policy

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
    text = text.replace("[", "").replace("]", "")
    _parser().parse_args(text.split())
