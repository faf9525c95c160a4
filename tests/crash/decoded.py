"""A decoded scan for subject ids under a scenario's roots, written without dsr (it checks dsr's purge).

Every object is read (``tests/bytescan.py`` lists them, local or ``s3://``), and on local storage every folder:

* its name, each segment percent-decoded until it no longer changes (``user_id=zq-gone%252F52b8``);
* its raw bytes as text (checksums, deletion vectors, anything);
* a Parquet file: every value of every column, structs, maps and lists walked (data, change data, checkpoints
  with their ``stats`` strings parsed as JSON); a file that cannot be decoded is a finding too (fail closed);
* a JSON file or JSON-lines (commits, anchors, documents): every leaf, strings that hold JSON parsed;
* an export package (zip): every member's name and content, decoded the same way.

Text ids are found as whole tokens (:class:`tests.leaks.Leaks`), in a string and in its percent-decoded form.
Integer ids belong to a column (``{"id": {0, 7, 14}}``): a top-level column of that name, or a min/max
statistic or partition value of it, holding one as a number or as its text; a number alone (a null count, a
version) says nothing.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from tests import bytescan
from tests.leaks import Leaks

__all__ = ["Finder", "Masker", "scan"]


def _unquoted(text: str) -> str:
    for _ in range(4):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of each leaf of a decoded cell or JSON document: dicts and maps walked, lists
    flattened (``add.stats.minValues.user_id``, ``add.partitionValues.user_id``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):  # a map: (key, value) pairs
            for k, v in value:
                yield from _leaves(v, f"{path}.{k}" if path else str(k))
        else:
            for v in value:
                yield from _leaves(v, path)
    else:
        yield path, value


_VALUE_PARENTS = {"minValues", "maxValues", "partitionValues", "partitionValues_parsed"}


@dataclass
class Finder:
    """What counts as an id: ``texts`` as whole tokens; ``columns``: column -> its integer ids."""

    texts: Iterable[str]
    columns: Mapping[str, set[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.leaks = Leaks(self.texts, whole_token=True)
        self._as_text = {c: {str(v) for v in vs} for c, vs in self.columns.items()}

    def in_text(self, text: str) -> list[str]:
        return sorted(set(self.leaks.found_in(text)) | set(self.leaks.found_in(_unquoted(text))))

    def in_leaf(self, path: str, value: Any) -> list[str]:
        """The dotted paths of the ids in one decoded value (a string holding JSON is walked)."""
        parts = path.split(".")
        name = parts[-1]
        as_value = len(parts) == 1 or parts[-2] in _VALUE_PARENTS  # a column, a bound, a partition value
        if as_value and name in self.columns and type(value) is int and value in self.columns[name]:
            return [path]
        if not isinstance(value, str):
            return []
        if as_value and name in self._as_text and value in self._as_text[name]:
            return [path]
        hits = [path] * len(self.in_text(value))
        if value[:1] in "{[":
            try:
                parsed = json.loads(value)
            except ValueError:
                return hits
            return hits + [p for k, v in _leaves(parsed, path) for p in self.in_leaf(k, v)]
        return hits


def _json_docs(data: bytes) -> list[Any] | None:
    text = data.decode("utf-8", errors="replace")
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        return None


def _content(name: str, data: bytes, finder: Finder, found: Counter[str], kept: Finder | None,
             seen: Counter[str]) -> None:
    """Count the ids in one file's content by place (``bytes``, ``parquet values at <leaf>``, ``json values at
    <leaf>``, ``package members``, ``undecodable``)."""
    found["bytes"] += len(finder.in_text(data.decode("utf-8", errors="replace")))
    if name.endswith(".parquet") or data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        except Exception:  # a torn write: nothing in it can be vouched for
            found["undecodable"] += 1
            return
        for row in rows:
            for leaf, value in _leaves(row):
                found.update(f"parquet values at {p}" for p in finder.in_leaf(leaf, value))
                if kept is not None and isinstance(value, str):
                    seen.update(kept.leaks.found_in(value))
    elif name.endswith((".json", ".jsonl", ".ndjson")) or name.rsplit("/", 1)[-1] == "_last_checkpoint":
        docs = _json_docs(data)
        if docs is None:
            found["undecodable"] += 1
            return
        found.update(f"json values at {p}" for doc in docs for k, v in _leaves(doc) for p in finder.in_leaf(k, v))
    elif name.endswith(".zip"):
        import zipfile

        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = [(m, archive.read(m)) for m in archive.namelist()]
        except (zipfile.BadZipFile, OSError):
            found["undecodable"] += 1
            return
        for member, content in members:
            inner: Counter[str] = Counter()
            inner["names"] += len(finder.in_text(member))
            _content(member, content, finder, inner, None, seen)
            found["package members"] += sum(inner.values())


def scan(roots: Mapping[str, str], finder: Finder, kept: Finder | None = None
         ) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """Ids under the roots (name -> folder or ``s3://`` prefix): ``(root/relative path, place)`` -> count; and
    how often each of ``kept``'s ids is a Parquet value under them."""
    found: Counter[tuple[str, str]] = Counter()
    seen: Counter[str] = Counter()
    for root_name, root in roots.items():
        if not root.startswith("s3://") and Path(root).is_dir():
            for folder in sorted(p for p in Path(root).rglob("*") if p.is_dir()):
                rel = folder.relative_to(root).as_posix()
                found[(f"{root_name}/{rel}/", "names")] += len(finder.in_text(rel))
        for key, data in bytescan.objects(root):
            here: Counter[str] = Counter()
            here["names"] += len(finder.in_text(key))
            _content(key, data, finder, here, kept, seen)
            for place, n in here.items():
                found[(f"{root_name}/{key}", place)] += n
    return +found, seen


class Masker:
    """Replaces ids (raw and percent-encoded, once and twice) by ``<erased-N>``/``<kept-N>`` in a text, so a
    failure message names the place, not the person."""

    def __init__(self, erased: Iterable[str], kept: Iterable[str]) -> None:
        pairs: list[tuple[str, str]] = []
        for label, ids in (("erased", erased), ("kept", kept)):
            for i, sid in enumerate(ids):
                once = quote(sid, safe="")
                for form in {sid, once, quote(once, safe=""), quote(sid, safe="/"), once.replace("%2F", "%2f")}:
                    pairs.append((form, f"<{label}-{i}>"))
        self._pairs = sorted(pairs, key=lambda p: len(p[0]), reverse=True)

    def __call__(self, text: str) -> str:
        for form, label in self._pairs:
            text = text.replace(form, label)
        return text
