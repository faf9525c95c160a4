"""Planning reads: the keys of one subject column for a batch of people (their identifiers of the column's
kind; for a normalised kind, the raw values the column holds in their normalised form, which the engine's
reader lists where it reads)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dsr.core.identifiers import Identifier
from dsr.core.policy import Policy, TableSpec
from dsr.delta.tableinfo import TableInfo
from dsr.engines.reading import Reader
from dsr.plan.erasure import SubjectKeys
from dsr.plan.people import column_keys, forms_of

__all__ = ["People", "keys_for", "people_of"]

People = Sequence[tuple[str, Sequence[Identifier]]]
"""(request id, the person's identifiers) per request."""


def people_of(requests: Sequence[Any]) -> list[tuple[str, tuple[Identifier, ...]]]:
    """(request id, identifiers) of control-table requests (their frozen set once resolved)."""
    return [(r.request_id, r.ids) for r in requests]


def keys_for(policy: Policy, view: TableSpec, people: People, info: TableInfo, reader: Reader,
             version: int | None = None) -> SubjectKeys:
    """The keys of ``view``'s subject column (:meth:`TableSpec.views`) for these people, at ``version``."""
    kind = policy.kinds[view.kind]
    ctype = info.schema.field(view.subject).type
    variants = None
    if kind.normalise:
        forms = sorted({v for _, v in forms_of(people, kind.name)})
        variants = reader.variants(view.uri, view.subject, kind.normalise, forms, version=version,
                                   info=info) if forms else {}
    return column_keys(kind, people, ctype, variants)
