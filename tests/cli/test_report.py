"""``dsr report``: the HTML pages of a real run, sweep and purge, read back with Python's HTML parser."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from dsr.core import control
from dsr.core.policy import load_policy
from tests import lakes
from tests.invoke import dsr
from tests.leaks import Leaks

ERASE = ("1003", "1007")


class _Page(HTMLParser):
    """The page's title, links, and every table as its rows of cell texts (header row first)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.title, self.links, self.tables, self.headings = "", [], [], []
        self._cell: list[str] | None = None
        self._in: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a":
            self.links.append(dict(attrs)["href"])
        elif tag in ("title", "h2"):
            self._in, self._cell = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "title" and self._cell is not None:
            self.title, self._cell = "".join(self._cell), None
        elif tag == "h2" and self._cell is not None:
            self.headings.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _rows(table: list[list[str]]) -> list[dict[str, str]]:
    head, *rows = table
    return [dict(zip(head, r, strict=True)) for r in rows]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> lakes.Lake:
    lake = lakes.busy(tmp_path_factory.mktemp("report") / "w")
    lake.policy_path.write_text(lake.policy_path.read_text() + "purge_after_hours: 0\n")
    for kind, subject in (("erase", ERASE[0]), ("erase", ERASE[1]), ("export", "1005")):
        assert dsr("request", kind, subject, env=lake.env).returncode == 0
    assert dsr("run", "-q", env=lake.env).returncode == 0
    assert dsr("purge", "-q", env=lake.env).returncode == 0
    assert dsr("sweep", "-q", "--table", "events", "--full", env=lake.env).returncode == 0
    return lake


def test_the_report_has_a_page_per_run_with_tables_versions_ge_and_residue(lake: lakes.Lake) -> None:
    out = lake.root / "report"
    done = dsr("report", "--out", str(out), env=lake.env)
    assert done.returncode == 0, done.stderr
    index = _Page((out / "index.html").read_text())
    assert index.title == "dsr runs"
    requests = control.list_requests(load_policy(lake.policy_path))
    (run_id,) = {r.run_id for r in requests}
    (sweep,) = [link for link in index.links if link.startswith("swp_")]
    assert index.links == [sweep, f"{run_id}.html"]  # newest first
    page = _Page((out / f"{run_id}.html").read_text())
    assert page.title == f"dsr run {run_id}"
    assert page.headings == ["Requests", "Tables", "Great Expectations", "Residue scan"]
    reqs, tables, checks, residue = (_rows(t) for t in page.tables)
    assert {(r["request"], r["kind"], r["outcome"]) for r in reqs} == {
        (r.request_id, r.kind, "completed") for r in requests}
    by_table = {t["table"]: t for t in tables}
    events = by_table["events"]
    assert events["operation"] in ("erase", "export, erase") and events["strategy"] == "delete"
    assert int(events["rows"]) > 0
    assert int(events["version after"]) == int(events["version before"]) + 1
    assert by_table["users"]["strategy"] == "anonymise" and by_table["consents"]["strategy"] == "retain"
    assert sum(int(t["rows exported"]) for t in tables) > 0  # the export request's rows
    assert {c["table"]: c["result"] for c in checks} == {"events": "passed", "users": "passed", "orders": "passed"}
    assert all("ok" in c["suites"] for c in checks)
    erasures = {r.request_id for r in requests if r.kind == "erase"}
    assert {r["request"]: r["findings"] for r in residue} == {rid: "0" for rid in erasures}


def test_a_sweep_has_its_page_too(lake: lakes.Lake) -> None:
    out = lake.root / "report3"
    assert dsr("report", "--out", str(out), env=lake.env).returncode == 0
    (sweep,) = (out).glob("swp_*.html")
    page = _Page(sweep.read_text())
    assert "No request in this run." in sweep.read_text()
    (tables,) = [_rows(t) for t in page.tables if "operation" in t[0]]
    assert [(t["table"], t["operation"], t["strategy"], t["rows"], t["error"]) for t in tables] == [
        ("events", "sweep", "delete", "0", "")]


def test_the_report_names_no_subject(lake: lakes.Lake) -> None:
    out = lake.root / "report2"
    assert dsr("report", "--out", str(out), env=lake.env).returncode == 0
    leaks = Leaks([*ERASE, "1005"])
    assert not leaks.in_file_names(out)
    assert not leaks.in_file_contents(out)


def test_out_that_is_a_file_is_refused_before_writing(lake: lakes.Lake, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    done = dsr("report", "--out", str(target), env=lake.env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a directory" in done.stderr
    assert target.read_text() == "x"
