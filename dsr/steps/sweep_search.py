"""The sweep's search of one table: each subject column with the suppression entries of the column's kind.

A table is searched through its views (:meth:`dsr.core.policy_model.TableSpec.views`), one per subject column.
A column of kind K is searched only with the digests of K's entries, under K's secret
(:mod:`dsr.core.suppression`): a user id ``77`` on the list never matches a customer number 77. A kind that
normalises has its column's values normalised first, where the engine reads them (:mod:`dsr.engines.matching`).
What matches comes back as the raw values the column holds (the MERGE keys on them), each with its canonical
form: its pseudonym is computed from the form (:func:`dsr.plan.people.pseudonym_input`), so a swept row gets the
pseudonym the run gave the person, whatever the case of the value; and the forms, as identifiers of the kind,
are what verification then proves absent from every column of that kind.

The implicit kind (a policy without ``identifiers``) is matched as it always was: a text column with the text
digests, an integer column with the integer ones. Entries of the implicit kind under a policy that declares
kinds (erasures listed before it did) have no column to match: they are counted and reported, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from dsr.core import suppression
from dsr.core.digests import kind_secret, suppression_digest
from dsr.core.identifiers import IMPLICIT, Identifier
from dsr.core.policy import Policy, TableSpec
from dsr.delta.newfiles import DataFile
from dsr.delta.tableinfo import TableInfo
from dsr.engines.base import Engine, Search
from dsr.engines.matching import Matches
from dsr.errors import InputError
from dsr.plan import erasure
from dsr.plan.keys import People
from dsr.plan.people import pseudonym_input

__all__ = ["ColumnMatch", "find", "people_of", "searches", "unmatchable"]


@dataclass(frozen=True)
class ColumnMatch:
    """One subject column's search: what was read, the raw values found as keys of the column's type (with the
    pseudonym input of each), and the people they belong to (request id -> identifiers of the column's kind)."""

    view: TableSpec
    found: Matches
    keys: erasure.SubjectKeys
    people: tuple[tuple[str, tuple[Identifier, ...]], ...]
    as_int: bool

    @property
    def request_ids(self) -> set[str]:
        return {rid for rid, _ in self.people}


def _as_int(ctype: Any, table: TableSpec, view: TableSpec) -> bool:
    """True for an integer subject column, False for text; InputError for a type a sweep cannot match."""
    import pyarrow as pa

    if pa.types.is_integer(ctype):
        return True
    if pa.types.is_string(ctype) or pa.types.is_large_string(ctype) or pa.types.is_string_view(ctype):
        return False
    raise InputError(f"table '{table.name}': subject column {view.subject!r} is {ctype}: a sweep matches text "
                     "and integer subject columns only")


def searches(policy: Policy, table: TableSpec, info: TableInfo, entries: suppression.Entries,
             secret: str) -> list[tuple[TableSpec, Search, bool]]:
    """(view, its search without files, integer column?) of each subject column of the table: the digests of the
    column's kind, the kind's secret and normalisation. InputError, before anything is read, for a column of a
    type a sweep cannot match."""
    out = []
    for view in table.views():
        kind = policy.kinds[view.kind]
        ctype = info.schema.field(view.subject).type
        as_int = _as_int(ctype, table, view)
        if kind.implicit:
            digests, own = entries.digests(as_int), secret
        else:
            digests, own = entries.digests(False, kind.name), kind_secret(secret, kind.name)
        out.append((view, Search(view.subject, info.physical_name(view.subject), ctype, [], False, digests, own,
                                 tuple(kind.normalise)), as_int and kind.implicit))
    return out


def find(policy: Policy, engine: Engine, table: TableSpec, info: TableInfo, entries: suppression.Entries,
         secret: str, files: Sequence[DataFile], full: bool) -> list[ColumnMatch]:
    """Search every subject column of the table (in ``files``, or ``full``: its whole current version)."""
    out = []
    for view, search, as_int in searches(policy, table, info, entries, secret):
        found = engine.find_suppressed(table.uri, replace(search, files=list(files), full=full))
        out.append(_matched(policy, view, search, found, entries, as_int))
    return out


def _matched(policy: Policy, view: TableSpec, search: Search, found: Matches, entries: suppression.Entries,
             as_int: bool) -> ColumnMatch:
    kind = policy.kinds[view.kind]
    triples: list[tuple[str, str, str]] = []
    people: dict[str, list[Identifier]] = {}
    for raw, form in sorted(found.values.items()):
        rid = entries.request_of(suppression_digest(search.secret, form), as_int, kind.name) or "sweep"
        triples.append((rid, raw, pseudonym_input(kind, form)))
        ident = Identifier(kind.name, form)
        if ident not in people.setdefault(rid, []):
            people[rid].append(ident)
    keys = erasure.subject_keys(triples, search.arrow_type)
    return ColumnMatch(view, found, keys, tuple((rid, tuple(ids)) for rid, ids in sorted(people.items())), as_int)


def people_of(matches: Sequence[ColumnMatch]) -> People:
    """(request id, identifiers found) over every column searched: what verification proves absent."""
    out: dict[str, list[Identifier]] = {}
    for m in matches:
        for rid, ids in m.people:
            mine = out.setdefault(rid, [])
            mine.extend(i for i in ids if i not in mine)
    return [(rid, tuple(ids)) for rid, ids in sorted(out.items())]


def unmatchable(policy: Policy, entries: suppression.Entries) -> int:
    """Erasures listed only under the implicit kind while the policy declares kinds: no column can match them."""
    return entries.requests_of(IMPLICIT) if policy.typed else 0
