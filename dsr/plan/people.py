"""Whose rows a subject column holds: a batch's identifiers of the column's kind, as the values to look for.

Pure, no I/O. An id of kind K is looked for only in columns of kind K. The implicit kind's id (a policy without
``identifiers``) and a kind without normalisation are cast to the column's type. A kind with a normalisation is
matched on the normalised text: the reader lists the values the column holds whose normalised form is one of
the person's (``variants``: raw value -> form), and those raw values are the keys (the MERGE, the filters and the
GE checks compare raw values, as ever).

Pseudonyms are computed from :func:`pseudonym_input`: the canonical value (the implicit kind's id as it is; a
declared kind's as ``kind:value``, so a user id and a customer number that happen to be equal never share one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dsr.core.identifiers import Identifier, IdKind
from dsr.plan.erasure import SubjectKeys, subject_keys

__all__ = ["column_keys", "forms_of", "pseudonym_input"]


def pseudonym_input(kind: IdKind, value: str) -> str:
    return value if kind.implicit else f"{kind.name}:{value}"


def forms_of(people: Sequence[tuple[str, Sequence[Identifier]]], kind: str) -> list[tuple[str, str]]:
    """(request id, canonical value) for each identifier of ``kind``."""
    return [(rid, i.value) for rid, ids in people for i in ids if i.kind == kind]


def column_keys(kind: IdKind, people: Sequence[tuple[str, Sequence[Identifier]]], column_type: Any,
                variants: Mapping[Any, str] | None = None) -> SubjectKeys:
    """The keys of a subject column of ``kind`` for these people (request id, identifiers). ``variants``: for
    a normalised kind, the column's raw values whose form is a person's (from the reader)."""
    pairs = forms_of(people, kind.name)
    triples: list[tuple[str, str, str]] = [(rid, v, pseudonym_input(kind, v)) for rid, v in pairs]
    if kind.normalise and variants:
        by_form: dict[str, list[Any]] = {}
        for raw, form in variants.items():
            by_form.setdefault(form, []).append(raw)
        raw_triples = [(rid, raw, pseudonym_input(kind, v)) for rid, v in pairs for raw in by_form.get(v, ())
                       if isinstance(raw, str)]
        keys = subject_keys(triples + raw_triples, column_type)
        return keys
    return subject_keys(triples, column_type)
