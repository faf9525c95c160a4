"""Identifier kinds: what a person may be known by (a user id, an email, a customer number), each with a type and
a normalisation applied identically to what people type and to what the tables hold.

Pure, no I/O. A policy without ``identifiers`` has one implicit kind, :data:`IMPLICIT` (``subject``): its id is
cast to each subject column's type, as it always was. A declared kind has a type (``string``, ``integer``,
``binary``) and an ordered list of normalisation steps:

- ``trim``: leading and trailing white space (Unicode) removed;
- ``lower``: Unicode lower case (per code point, as utf8proc does it: no special casing by context);
- ``nfkc``: Unicode normalisation form KC (compatibility characters folded: full-width letters, ligatures).

There is one implementation of the steps, :func:`normalise_array` (pyarrow compute): the request's value goes
through it in this process, and the tables' values through the very same function wherever the engine reads them
(in this process, or in the Python workers of a Spark cluster: ``mapInArrow``). An engine whose result differs on
the probe strings (:data:`PROBES`) is refused for that kind (:mod:`dsr.core.gate`).

A person's identity is a set of :class:`Identifier` values, each a (kind, canonical value) pair: the canonical
value is the normalised text (an integer kind's as its decimal digits).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dsr.core.subjects import check_subject_id
from dsr.engines.reading import PROBES, normalise_array
from dsr.errors import InputError

__all__ = [
    "IMPLICIT",
    "KIND_TYPES",
    "NORMALISATIONS",
    "PROBES",
    "IdKind",
    "Identifier",
    "identities_json",
    "normalise_array",
    "normalise_value",
    "parse_kind_value",
]

IMPLICIT = "subject"
"""The one kind of a policy that declares no ``identifiers``: today's untyped subject id."""

KIND_TYPES = ("string", "integer", "binary")
NORMALISATIONS = ("trim", "lower", "nfkc")
_KIND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

@dataclass(frozen=True)
class IdKind:
    """A kind of identifier: its name, type and normalisation steps (in order)."""

    name: str
    type: str = "string"
    normalise: tuple[str, ...] = ()
    implicit: bool = False
    """The implicit kind of a policy without ``identifiers``: untyped, cast to each column's type."""

    def canonical(self, value: str, where: str = "subject id") -> str:
        """The value as it is stored and matched: checked (never echoed) and normalised. InputError when it is
        empty, holds a character nobody can see, or does not fit the kind's type."""
        if self.implicit:
            return check_subject_id(value, where)
        if not isinstance(value, str) or value == "":
            raise InputError(f"{where}: empty")
        check_subject_id(value.strip() or "x", where)  # control, invisible and bidi characters refused
        out = normalise_value(value, self.normalise)
        if out == "":
            raise InputError(f"{where}: empty once normalised")
        if out.strip() != out:
            raise InputError(f"{where}: has leading or trailing white space (the kind {self.name!r} does not trim)")
        if self.type == "integer":
            if not re.fullmatch(r"[+-]?[0-9]+", out) or not -(2**63) <= int(out) < 2**63:
                raise InputError(f"{where}: not a whole number, as the identifier kind {self.name!r} needs")
            return str(int(out))
        return out


@dataclass(frozen=True, order=True)
class Identifier:
    """One identifier of a person: its kind and canonical value."""

    kind: str
    value: str

    def __repr__(self) -> str:  # never the value: reprs reach logs and tracebacks
        return f"Identifier(kind={self.kind!r}, value=<withheld>)"


def normalise_value(value: str, steps: Sequence[str]) -> str:
    """One value through :func:`normalise_array`."""
    import pyarrow as pa

    if not steps:
        return value
    return str(normalise_array(pa.array([value], pa.string()), steps)[0].as_py())


def parse_kind_value(text: str, kinds: Mapping[str, IdKind], where: str = "--id") -> Identifier:
    """``KIND=VALUE`` (or a plain value where the policy has one kind) -> a canonical Identifier. InputError
    naming the kind, never the value."""
    only = next(iter(kinds.values())) if len(kinds) == 1 else None
    if "=" in text:
        name, _, value = text.partition("=")
        if name in kinds:
            return Identifier(name, kinds[name].canonical(value, f"{where} {name}"))
        if only is None or not only.implicit:  # an implicit kind's id may hold '=' itself
            shown = repr(name) if _KIND_NAME.fullmatch(name) else "(not a kind name)"
            raise InputError(f"{where}: unknown identifier kind {shown} (the policy declares: "
                             f"{', '.join(sorted(kinds))})")
    if only is None:
        raise InputError(f"{where}: give the identifier as KIND=VALUE (kinds: {', '.join(sorted(kinds))})")
    return Identifier(only.name, only.canonical(text, where))


def identities_json(given: Sequence[Identifier], resolved: Iterable[Identifier] | None = None) -> str:
    """The control table's ``identities`` text: ``{"given": [[kind, value], ...]}`` in the order filed, and once
    resolution froze the set, ``"resolved"`` (sorted); compact, UTF-8 as it is."""
    import json

    doc: dict[str, list[list[str]]] = {"given": [[i.kind, i.value] for i in given]}
    if resolved is not None:
        doc["resolved"] = [[i.kind, i.value] for i in sorted(set(resolved))]
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
