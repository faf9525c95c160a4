"""Near matches: rows that hold a person's identifier in another spelling (Unicode form, case, surrounding
blanks).

A request whose person matches no row anywhere completes as "no data found" — unless some row matches one of
their identifiers after Unicode NFKC normalisation, lower-casing and trimming (``José`` typed in NFD form
against NFC data, a stray capital, a trailing blank). Then the request must not complete: a person reviews it.
Only counts come out of here, never the values found.

Per identifier kind, in the subject columns of that kind only (a user id is never looked for among customer
numbers), with the kind's own normalisation:

- a kind without normalisation (the implicit kind of a policy without ``identifiers``, or a declared kind with
  no ``normalise``) keeps the near match above: a row is near when its NFKC/lower/trim form is the identifier's
  and its value is not the identifier;
- a kind that normalises already matches what its steps fold (an email kind with ``[trim, lower]`` erases
  ``' Jane@X.org'`` as ``jane@x.org``): a row is near only when its NFKC/lower/trim form is the identifier's and
  its canonical form under the kind's steps is not, i.e. for what the near form folds and the kind does not (a
  full-width ``ｊａｎｅ@x.org`` for a kind without ``nfkc``);
- a kind whose steps are all three (``trim``, ``lower``, ``nfkc``) leaves nothing for the near form to fold: its
  columns are not searched.

Integer kinds, and text identifiers in columns that are not text, have no other spelling: not searched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from dsr.core.identifiers import NORMALISATIONS, Identifier
from dsr.core.policy import Policy
from dsr.delta import access
from dsr.engines.reading import LOCAL, Reader, normalise

__all__ = ["near_matches", "normalise", "outcomes", "review_reason"]

People = Sequence[tuple[str, Sequence[Identifier]]]


def _plain(policy: Policy, value: str) -> tuple[Identifier, ...]:
    """A plain id as identifiers: of the policy's only kind (or, with several kinds, of each text kind: at worst
    a review is asked, nothing is erased)."""
    kinds = policy.kinds
    names = list(kinds) if len(kinds) == 1 else [k.name for k in kinds.values() if k.type == "string"]
    return tuple(Identifier(n, value) for n in names)


def _people(policy: Policy, people: Sequence[str] | People) -> list[tuple[str, tuple[Identifier, ...]]]:
    """(label, identifiers): a plain id is its own label (:func:`_plain`)."""
    return [(p, _plain(policy, p)) if isinstance(p, str) else (p[0], tuple(p[1])) for p in people]


def near_matches(policy: Policy, people: Sequence[str] | People, reader: Reader = LOCAL) -> dict[str, dict[str, int]]:
    """label -> {table: rows whose text subject column of one of the person's identifier kinds equals one of
    their identifiers of that kind only after normalisation}. ``people``: (label, identifiers), or plain ids
    (each its own label).

    One read of each text subject column of a kind some person has an identifier of, where the engine reads
    (only called for requests that matched nothing exactly, so rarely); only counts per form come back. Tables
    the reader cannot read are skipped (their requests fail on their own account).
    """
    import pyarrow as pa

    from dsr.core.masks import pseudonym_kind
    from dsr.errors import TableError

    who = _people(policy, people)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for table in policy.tables:
        for view in table.views():
            kind = policy.kinds.get(view.kind)
            values = sorted({i.value for _, ids in who for i in ids if i.kind == view.kind})
            if kind is None or not values or set(NORMALISATIONS) <= set(kind.normalise):
                continue
            wanted = pa.array(values, pa.string())
            forms = normalise(wanted).to_pylist()
            by_form: dict[str, set[str]] = defaultdict(set)
            for value, form in zip(values, forms, strict=True):
                by_form[form] |= {label for label, ids in who if Identifier(view.kind, value) in ids}
            try:
                info = access.table_info(table.uri)
                if pseudonym_kind(info.schema.field(view.subject).type) != "string":
                    continue
                counts = reader.near_counts(table.uri, view.subject, wanted, pa.array(sorted(by_form), pa.string()),
                                            steps=tuple(kind.normalise))
            except TableError:
                continue
            for form, n in counts.items():
                for label in by_form.get(form, ()):
                    out[label][table.name] = out[label].get(table.name, 0) + n
    return dict(out)


def review_reason(tables: dict[str, int]) -> str:
    """The request record's reason: counts and table names only."""
    where = ", ".join(f"{t} ({n} row(s))" for t, n in sorted(tables.items()))
    return ("no row matches the subject id exactly, but rows in " + where + " match it after Unicode "
            "normalisation, case folding or trimming: a person must review the id and file the request again")


def _identifiers(policy: Policy, found: Mapping[str, tuple[str, int | None]],
                 people: Mapping[str, Sequence[Identifier]] | None) -> list[tuple[str, tuple[Identifier, ...]]]:
    """(request id, identifiers) of the requests that matched no row: given, or read from the control table."""
    from dsr.core import control

    empty = sorted(rid for rid, (_, n) in found.items() if n == 0)
    if people is None and empty:
        people = {r.request_id: r.ids for r in control.list_requests(policy, ids=empty)}
    people = people or {}
    return [(rid, tuple(people.get(rid) or _plain(policy, found[rid][0]))) for rid in empty]


def outcomes(
    policy: Policy, found: dict[str, tuple[str, int | None]], done_word: str, reader: Reader = LOCAL,
    people: Mapping[str, Sequence[Identifier]] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """``found``: request id -> (subject id, rows of the person found in all tables, None if unknown);
    ``people``: request id -> its identifiers (default: read from the control table, for those that found none).

    Returns (request id -> outcome, request id -> reason to fail for review). A person who matched no row
    anywhere gives "no data found" — unless rows match one of their identifiers after Unicode normalisation,
    case folding or trimming: then the request fails for a person to review (counts only, never values).
    """
    todo = _identifiers(policy, found, people)
    near = near_matches(policy, todo, reader) if todo else {}
    outcomes: dict[str, str] = {}
    review: dict[str, str] = {}
    for rid, (_, n) in found.items():
        if n == 0 and rid in near:
            review[rid] = review_reason(near[rid])
        else:
            outcomes[rid] = "no data found" if n == 0 else done_word
    return outcomes, review
