"""The purge's settling, person by person: which control-table rows are a settling erasure's person's, and what
those rows keep once minimised.

A person is known by every identifier their erasure holds (the one it names, those filed, those resolved): a
completed request of theirs is one that names or lists one of those (kind and value: another person's customer
number 77 is not a user id 77), raw, or already digested by a purge killed half-way. Minimising a row replaces
``subject_id`` by its keyed digest (:func:`dsr.core.masks.subject_digest`, as ever) and every value in
``identities`` by the digest of that value, the kinds and the shape kept (``dsr requests --json`` still says by
how many identifiers of which kinds the request named its person); the raw values are then nowhere in the
control table. Re-applying the erasure later is the suppression list's job (:mod:`dsr.core.suppression`), whose
entries are made before any value goes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from dsr.core import control
from dsr.core.identifiers import IMPLICIT
from dsr.core.masks import SUBJECT_DIGEST_PREFIX, subject_digest
from dsr.core.policy import Policy
from dsr.core.requests import Request
from dsr.verify.control_scan import Pair, identity_pairs, raw_pairs

__all__ = ["digested_identities", "minimised", "people_rows"]


def _digest(key: bytes, value: str) -> str:
    return value if value.startswith(SUBJECT_DIGEST_PREFIX) else subject_digest(key, value)


def people_rows(policy: Policy, todo: Sequence[Request], key: bytes) -> tuple[list[Request], dict[str, str]]:
    """The completed requests of the settling erasures' people (the erasures themselves, and exports filed under,
    or resolved to, any of their identifiers), and for each row the settling erasure it counts for. One read of
    the completed requests (the purge reads them already)."""
    known: dict[Pair, str] = {}
    for (kind, value), rids in sorted(raw_pairs(todo).items()):
        known.setdefault((kind, value), min(rids))
        known.setdefault((kind, _digest(key, value)), min(rids))
    for r in todo:
        if r.minimised:
            known.setdefault((r.id_kind or IMPLICIT, r.subject_id), r.request_id)
    owner: dict[str, str] = {}
    mine = []
    for r in control.list_requests(policy, status="completed"):
        hit = [known[p] for p in [(r.id_kind or IMPLICIT, r.subject_id), *identity_pairs(r.identities)]
               if p in known]
        if hit:
            mine.append(r)
            owner[r.request_id] = hit[0]
    return mine, owner


def digested_identities(key: bytes, text: str | None) -> str | None:
    """An ``identities`` JSON text with every value replaced by its digest (kinds and shape kept)."""
    if not text:
        return text
    doc = json.loads(text)
    out = {part: [[str(k), _digest(key, str(v))] for k, v in items] if isinstance(items, list) else items
           for part, items in doc.items()}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def minimised(key: bytes, rows: Sequence[Request]) -> tuple[dict[str, str], dict[str, str | None]]:
    """(request id -> digested subject id, request id -> digested identities) of the rows that still hold a raw
    value: what :func:`dsr.core.control.minimise` writes."""
    subjects: dict[str, str] = {}
    identities: dict[str, str | None] = {}
    for r in rows:
        ident = digested_identities(key, r.identities)
        if r.minimised and ident == r.identities:
            continue
        subjects[r.request_id] = _digest(key, r.subject_id)
        identities[r.request_id] = ident
    return subjects, identities
