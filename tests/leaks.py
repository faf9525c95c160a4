"""The tests' one leak scanner: where, outside a table's own data, a subject id shows up.

Invariant 3 says personal data never reaches logs, XCom, exception messages, Delta commit info or file names.
Every test that checks it scans through :class:`Leaks`, so "found" means the same thing everywhere: the id as a
whole token (``1003`` is found in ``"row 1003 of"`` and ``"part_1003.json"`` but not in ``"21003"`` nor after
a dot, as in a timestamp's ``09.1003Z``), or, for ids that cannot occur by chance (``whole_token=False``),
anywhere as a substring. UUIDs (Delta table ids, data file names) are blanked first: a random one holds a group
such as ``-1007-`` by chance. Written independently of dsr's own scrubbing, which is what it checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Leaks", "strings_in"]


def strings_in(obj: Any) -> list[str]:
    """Every key and string value in a JSON-like structure, flattened."""
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [str(k), *strings_in(v)]]
    if isinstance(obj, list):
        return [s for v in obj for s in strings_in(v)]
    return [obj] if isinstance(obj, str) else []


def _log_files(*roots: Path | str) -> Iterator[Path]:
    for root in roots:
        yield from sorted(Path(root).rglob("_delta_log/*.json"))


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class _Pattern:
    """The ids' pattern, searched in a text whose UUIDs are blanked."""

    def __init__(self, ids: re.Pattern[str]) -> None:
        self.ids = ids

    def search(self, text: str) -> re.Match[str] | None:
        return self.ids.search(_UUID.sub("<uuid>", text))

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return self.ids.finditer(_UUID.sub("<uuid>", text))


class Leaks:
    """Scans texts, file names, file contents and Delta logs for any of ``ids``."""

    def __init__(self, ids: Iterable[object], *, whole_token: bool = True) -> None:
        self.ids = sorted({str(i) for i in ids if i is not None and str(i) != ""}, key=len, reverse=True)
        assert self.ids, "a leak scan needs at least one id"
        parts = [re.escape(i) for i in self.ids]
        if whole_token:
            parts = [rf"(?<![0-9A-Za-z.]){p}(?![0-9A-Za-z])" for p in parts]
        self._pattern = _Pattern(re.compile("|".join(parts)))

    def found_in(self, text: str) -> list[str]:
        """The ids found in one text."""
        return sorted({m.group(0) for m in self._pattern.finditer(text)})

    def in_texts(self, texts: Mapping[str, str]) -> list[str]:
        """The names of the texts that hold an id."""
        return [name for name, text in texts.items() if self._pattern.search(text)]

    def in_file_names(self, *roots: Path | str) -> list[Path]:
        """Files and folders under the roots whose name holds an id."""
        return [p for root in roots if Path(root).exists() for p in sorted(Path(root).rglob("*"))
                if self._pattern.search(p.name)]

    def in_file_contents(self, *roots: Path | str, skip: Iterable[str] = ()) -> list[Path]:
        """Files under the roots (except those whose name starts with one in ``skip``) whose text holds an id."""
        skipped = tuple(skip)
        return [p for root in roots if Path(root).exists() for p in sorted(Path(root).rglob("*"))
                if p.is_file() and not (skipped and p.name.startswith(skipped))
                and self._pattern.search(p.read_bytes().decode("utf-8", errors="replace"))]

    def in_commit_info(self, *roots: Path | str) -> list[tuple[Path, str]]:
        """(log file, string) for every ``commitInfo`` string holding an id, in every Delta log under the roots:
        predicates, operation parameters, metrics and engine info."""
        return [(f, s) for f, action in self._actions(*roots) if "commitInfo" in action
                for s in strings_in(action["commitInfo"]) if self._pattern.search(s)]

    def in_log_actions(self, *roots: Path | str) -> list[tuple[Path, str]]:
        """Like :meth:`in_commit_info` for every action of every commit, minus the per-file column statistics of
        ``add`` actions (the min/max of the data, where ids legitimately live: in the table's own data)."""
        hits = []
        for f, action in self._actions(*roots):
            if "add" in action:
                action["add"].pop("stats", None)
            hits += [(f, s) for s in strings_in(action) if self._pattern.search(s)]
        return hits

    def in_rows(self, rows: Iterable[Mapping[str, Any]], *, ignore: Iterable[str] = ()) -> list[str]:
        """Rows (as JSON, minus the columns in ``ignore``) that hold an id; returns the offending JSON texts."""
        dropped = set(ignore)
        texts = [json.dumps({k: v for k, v in row.items() if k not in dropped}, default=str) for row in rows]
        return [t for t in texts if self._pattern.search(t)]

    @staticmethod
    def _actions(*roots: Path | str) -> Iterator[tuple[Path, dict[str, Any]]]:
        for f in _log_files(*roots):
            for line in f.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    yield f, json.loads(line)
