"""What a finished purge must leave, checked by readers that are not dsr's, each failure a :class:`Finding`.

* every table (the data tables, ``_dsr/requests``, ``_dsr/audit``, ``_dsr/suppression`` when present) reads on
  delta-rs (DataFusion SQL through ``deltalake``, which honours deletion vectors) and on Sail (Spark Connect) --
  on Sail, every table that Sail could read right after the run (``Scenario.sail_unreadable`` lists the others);
* every other row is intact: each data table's rows, as Sail reads them, equal those right after the run
  (multisets of ``repr`` of sorted dicts);
* no erased id anywhere under the lake and the exports (``decoded.scan``); each kept id still in the data;
* ``dsr audit verify`` exits 0; ``dsr requests --json`` shows every erasure purged with residue 0; ``dsr receipt``
  of an erasure (a person exported, then erased, found in every table) shows residue 0 for every table.

Findings name the check, the place (a table, a path relative to the roots with ids masked, a request id) and
counts, never an id.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.crash import decoded
from tests.crash.scenario import ERASED, ERASED_INTS, EXPORTED, KEPT, TABLES, Place, Scenario, listing
from tests.invoke import dsr

__all__ = ["MASK", "Finding", "baseline", "check", "row_keys", "run_dsr", "sail_rows"]

MASK = decoded.Masker(ERASED, KEPT)


@dataclass(frozen=True)
class Finding:
    """One failed check: which, where (a table, a folder or file relative to the roots, a request id), what
    (counts, an error line). Ids in the place or the text are masked when it is made."""

    check: str
    where: str
    detail: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "where", MASK(self.where))
        object.__setattr__(self, "detail", MASK(self.detail))

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.detail}"


def _line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return MASK(text[:300])


def row_keys(rows: Iterable[Mapping[str, Any]]) -> Counter[str]:
    return Counter(repr(sorted(r.items())) for r in rows)


def sail_rows(spark: Any, uri: str) -> Counter[str]:
    return row_keys(r.asDict(recursive=True) for r in spark.read.format("delta").load(uri).collect())


def _present(uri: str) -> bool:
    if uri.startswith("s3://"):
        return bool(listing(uri))
    return Path(uri).exists() and any(Path(uri).iterdir())


def _delta_rs_count(uri: str) -> int:
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    from dsr.delta import storage

    table = DeltaTable(uri, storage_options=storage.storage_options(uri))
    batches = QueryBuilder().register("t", table).execute("SELECT * FROM t").read_all()
    return int(pa.table(batches).num_rows)


def baseline(story: Scenario, spark: Any) -> None:
    """Right after the run (the snapshot): which tables there are (dsr's own ones that this lake has), the rows
    of each data table as Sail reads them, and the tables Sail cannot read (name -> why)."""
    story.tables = [name for name, uri in story.snapshot.table_uris().items() if name in TABLES or _present(uri)]
    for name in story.tables:
        try:
            rows = sail_rows(spark, story.snapshot.table_uris()[name])
        except Exception as exc:
            story.sail_unreadable[name] = _line(exc)
            continue
        if name in TABLES:
            story.rows[name] = rows


def readers(place: Place, spark: Any, story: Scenario) -> list[Finding]:
    out = []
    after_run = story.rows
    for name in story.tables:  # each table there was after the run, dsr's own included
        uri = place.table_uris()[name]
        try:
            _delta_rs_count(uri)
        except Exception as exc:
            out.append(Finding("reads on delta-rs", name, _line(exc)))
        try:
            rows = sail_rows(spark, uri)
        except Exception as exc:
            if name not in story.sail_unreadable:  # else Sail could not read it before the purge either
                out.append(Finding("reads on Sail", name, _line(exc)))
            continue
        if name in after_run and rows != after_run[name]:
            missing, extra = after_run[name] - rows, rows - after_run[name]
            out.append(Finding("rows intact", name, f"{sum(missing.values())} row(s) of the run's result missing, "
                               f"{sum(extra.values())} row(s) not in it"))
    return out


def no_ids(place: Place) -> list[Finding]:
    """The decoded scan: erased ids found, by folder and place (files and hits counted); kept ids lost."""
    finder = decoded.Finder(ERASED, ERASED_INTS | {"subject_id": ERASED_INTS["id"]})
    found, seen = decoded.scan(place.roots(), finder, decoded.Finder(KEPT))
    files: Counter[tuple[str, str]] = Counter()
    hits: Counter[tuple[str, str]] = Counter()
    for (rel, where), n in found.items():
        folder = rel.rstrip("/").rsplit("/", 1)[0] + "/"
        files[(folder, where)] += 1
        hits[(folder, where)] += n
    out = [Finding("no erased id", folder, f"{hits[(folder, where)]} in {where} of {n} file(s) or folder(s)")
           for (folder, where), n in sorted(files.items())]
    lost = [i for i, sid in enumerate(KEPT) if not seen[sid]]
    if lost:
        out.append(Finding("kept ids present", "lake", f"kept id(s) {lost} (by index) no longer in any data file"))
    return out


def run_dsr(place: Place, *args: str) -> subprocess.CompletedProcess[str]:
    """``dsr --policy P ARGS`` in this process; an exception that escapes ``main`` is exit 99 (never a crash of
    the test: it is what a trial reports)."""
    try:
        return dsr("--policy", str(place.policy_path), *args, env=place.env)
    except Exception as exc:
        return subprocess.CompletedProcess(["dsr", *args], 99, "", f"raised {_line(exc)}")


def dsr_says(place: Place, erasures: Mapping[str, str], receipt_of: str) -> list[Finding]:
    """``dsr audit verify``; ``dsr requests --json`` for every erasure (subject id -> request id); ``dsr receipt``
    for one (``receipt_of``). A request is named by its id and whether its subject id is text or an integer."""
    out = []
    verify = run_dsr(place, "audit", "verify")
    if verify.returncode != 0:
        said = (verify.stdout + verify.stderr).strip().splitlines() or [""]
        out.append(Finding("dsr audit verify", "audit", f"exit {verify.returncode}: {said[-1][:200]}"))
    listed = run_dsr(place, "requests", "--json")
    try:
        rows = {r["request_id"]: r for r in json.loads(listed.stdout)}
    except ValueError:
        return [*out, Finding("dsr requests --json", "requests", f"exit {listed.returncode}, no JSON")]
    for sid, rid in sorted(erasures.items(), key=lambda item: item[1]):
        purge = (rows.get(rid) or {}).get("purge") or {}
        if purge.get("state") != "purged" or purge.get("residue") != 0:
            what = "an integer id" if sid.isdigit() else "a text id"
            out.append(Finding("dsr requests --json", f"{rid} ({what})",
                               f"purge state {purge.get('state')!r}, residue {purge.get('residue')!r}"))
    receipt = run_dsr(place, "receipt", receipt_of, "--json")
    try:
        tables = json.loads(receipt.stdout)["tables"]
    except (ValueError, KeyError):
        return [*out, Finding("dsr receipt", receipt_of, f"exit {receipt.returncode}, no JSON")]
    bad = {t: (tables.get(t) or {}).get("residue") for t in TABLES if (tables.get(t) or {}).get("residue") != 0}
    if bad:
        out.append(Finding("dsr receipt", receipt_of, ", ".join(f"{t} residue {v!r}" for t, v in sorted(bad.items()))))
    return out


def check(place: Place, spark: Any, story: Scenario) -> list[Finding]:
    """Every check on a place; all failures, not only the first."""
    return readers(place, spark, story) + no_ids(place) + dsr_says(place, story.requests, story.requests[EXPORTED[0]])
