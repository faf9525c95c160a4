"""Identity resolution, pure: from the identifiers a request names to every identifier the link tables tie to
the same person, transitively, up to a depth, with a cap (the fan-out guard).

No I/O here: :func:`expand` asks ``lookup`` (the link tables' rows, read where the engine reads) for the rows
holding any of the wanted values, one level at a time for a whole batch, so each link table is read once per
level, not once per request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core.identifiers import Identifier
from dsr.core.policy_model import IdentityLink

__all__ = ["Lookup", "Resolution", "expand", "fan_out_reason"]

Lookup = Callable[[IdentityLink, Mapping[str, Sequence[str]]], Any]
"""(link table, column -> wanted canonical values) -> a pyarrow Table of the matching rows, every link column as
canonical text (:meth:`dsr.engines.reading.Reader.linked`)."""


@dataclass
class Resolution:
    """One request's resolved identifiers, how deep resolution went, and whether the guard stopped it."""

    ids: set[Identifier]
    depth: int = 0
    over_cap: bool = False
    links: dict[str, int] = field(default_factory=dict)  # link table path -> rows that tied identifiers

    def kinds(self) -> dict[str, int]:
        """kind -> how many identifiers of it (what may be shown: never the values)."""
        out: dict[str, int] = {}
        for i in self.ids:
            out[i.kind] = out.get(i.kind, 0) + 1
        return dict(sorted(out.items()))


def expand(given: Mapping[str, Sequence[Identifier]], links: Sequence[IdentityLink], lookup: Lookup, *,
           max_ids: int, max_depth: int) -> dict[str, Resolution]:
    """request id -> its Resolution. Level by level (at most ``max_depth``), every link table is asked for the
    rows holding a value of the newest identifiers of its columns' kinds; each such row ties its other columns'
    values (NULLs and empty texts skipped) to the request. A request above ``max_ids`` identifiers stops there,
    ``over_cap``."""
    out = {rid: Resolution(set(ids)) for rid, ids in given.items()}
    frontier = {rid: set(ids) for rid, ids in given.items()}
    for level in range(1, max_depth + 1):
        live = {rid: f for rid, f in frontier.items() if f and not out[rid].over_cap}
        if not live:
            break
        found: dict[str, set[Identifier]] = {rid: set() for rid in live}
        for link in links:
            wanted = {col: sorted({i.value for f in live.values() for i in f if i.kind == kind})
                      for col, kind in link.columns}
            if not any(wanted.values()):
                continue
            rows = lookup(link, wanted)
            for row in rows.to_pylist():
                held = {Identifier(kind, str(row[col])) for col, kind in link.columns if row.get(col) not in
                        (None, "")}
                for rid, f in live.items():
                    if held & f:
                        found[rid] |= held
                        out[rid].links[link.path] = out[rid].links.get(link.path, 0) + 1
        for rid, new in found.items():
            fresh = new - out[rid].ids
            frontier[rid] = fresh
            if fresh:
                out[rid].ids |= fresh
                out[rid].depth = level
                out[rid].over_cap = len(out[rid].ids) > max_ids
    for r in out.values():
        r.over_cap = r.over_cap or len(r.ids) > max_ids
    return out


def fan_out_reason(r: Resolution, max_ids: int) -> str:
    """Why a request fails for review: kinds and counts, never values."""
    counts = ", ".join(f"{k} {n}" for k, n in r.kinds().items())
    return (f"identity resolution: {len(r.ids)} identifier(s) ({counts}) exceed identity_max_ids {max_ids}: "
            "a link table may tie unrelated people together; review the link tables, then file the request again "
            "(nothing was exported or erased)")
