"""The suppression list ``<lake>/<control>/suppression`` (Delta): what a completed erasure leaves so dsr can
apply it again (a sweep) without keeping the person's id readable.

One entry per completed erasure: its request id, when it was added, and keyed digests of the subject id in the
forms a subject column can hold it -- as text (string columns) and as a canonical integer (integer columns,
when the id is one) -- plus a fingerprint of the key. The digests (:func:`dsr.core.digests.suppression_digest`)
are computed by the engines over a table's rows in SQL, so a sweep finds the erased people's rows without their
ids. Entries survive the purge's data minimisation (they never held the id); the key is the pseudonym key.

Entries are added when an erasure completes (the ``complete`` step, when the key is set), and by ``ensure`` for
any completed erasure still missing one whose id is still known (before a sweep, and before the purge replaces
the id in the control table by its digest). Appends only; a request's entry is added once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dsr.core.digests import key_check, suppression_digest, suppression_secret
from dsr.core.policy import Policy
from dsr.core.requests import Request
from dsr.core.subjects import cast_subject
from dsr.delta import storage
from dsr.delta import tables as deltautil
from dsr.errors import PolicyError

__all__ = ["Entries", "digests_of", "ensure", "load", "uri"]


def uri(policy: Policy) -> str:
    return storage.join(policy.control_uri, "suppression")


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("added_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("digest_text", pa.string(), nullable=False),
        pa.field("digest_int", pa.string()),
        pa.field("key_check", pa.string(), nullable=False),
    ])


def digests_of(secret: str, subject_id: str) -> tuple[str, str | None]:
    """(text digest, integer digest or None): the id as a string column holds it, and as an integer column
    holds it (canonical: ``+12`` and ``012`` are 12), when it is one."""
    import pyarrow as pa

    as_int = cast_subject(subject_id, pa.int64())
    return suppression_digest(secret, subject_id), None if as_int is None else suppression_digest(secret, str(as_int))


@dataclass(frozen=True)
class Entries:
    """The suppression list as loaded: digests to match, and what they stand for (counts and request ids)."""

    request_ids: tuple[str, ...]
    text: Any  # pyarrow string array: one text digest per entry
    integer: Any  # pyarrow string array: the integer digests (entries whose id is an integer)
    by_text: dict[str, str]  # digest -> request id
    by_int: dict[str, str]
    added_through: dt.datetime | None  # the newest entry's time

    def __len__(self) -> int:
        return len(self.request_ids)

    def digests(self, as_int: bool) -> Any:
        return self.integer if as_int else self.text

    def request_of(self, digest: str, as_int: bool) -> str | None:
        return (self.by_int if as_int else self.by_text).get(digest)


def load(policy: Policy, key: bytes, also: Sequence[Request] = ()) -> Entries:
    """Every entry (the first per request), plus in memory those of the completed erasures in ``also`` that
    have none yet (a dry run adds nothing to the table). PolicyError when an entry was written with another
    key: a sweep with the wrong key would match nobody and report a clean table."""
    import pyarrow as pa

    table = deltautil.open_table(uri(policy))
    rows = [] if table is None else deltautil.read_all(table, schema=_schema()).to_pylist()
    listed = {row["request_id"] for row in rows}
    rows += _new_rows(key, [r for r in _todo(also) if r.request_id not in listed])
    check = key_check(key)
    if any(r["key_check"] != check for r in rows):
        raise PolicyError(f"the suppression list at {uri(policy)} was written with another key than "
                          f"${policy.pseudonym_key_env}: set the key its entries were made with")
    first: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["added_at"]):
        first.setdefault(r["request_id"], r)
    by_text = {r["digest_text"]: rid for rid, r in first.items()}
    by_int = {r["digest_int"]: rid for rid, r in first.items() if r["digest_int"]}
    return Entries(request_ids=tuple(first), text=pa.array(sorted(by_text), pa.string()),
                   integer=pa.array(sorted(by_int), pa.string()), by_text=by_text, by_int=by_int,
                   added_through=max((r["added_at"] for r in first.values()), default=None))


def _todo(requests: Sequence[Request]) -> list[Request]:
    return [r for r in requests if r.kind == "erase" and r.status == "completed" and not r.minimised]


def _new_rows(key: bytes, requests: Sequence[Request]) -> list[dict[str, Any]]:
    secret = suppression_secret(key)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for r in requests:
        text, integer = digests_of(secret, r.subject_id)
        rows.append({"request_id": r.request_id, "added_at": now, "digest_text": text, "digest_int": integer,
                     "key_check": key_check(key)})
    return rows


def ensure(policy: Policy, key: bytes, requests: Sequence[Request]) -> int:
    """Add an entry for each completed erasure among ``requests`` that has none and whose id is still known;
    returns how many were added (one commit)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    todo = _todo(requests)
    if not todo:
        return 0
    table = deltautil.create_if_missing(uri(policy), _schema(), name="dsr_suppression",
                                        description="dsr-lake suppression list: keyed digests of erased subjects")
    have = set(deltautil.read_where(table, "request_id", [r.request_id for r in todo], ["request_id"])
               .column(0).to_pylist())  # a filtered read: the list grows with every erasure ever done
    todo = [r for r in todo if r.request_id not in have]
    if not todo:
        return 0
    rows = _new_rows(key, todo)
    write_deltalake(table, pa.Table.from_pylist(rows, schema=_schema()), mode="append",
                    commit_properties=deltautil.commit_properties({"dsr.operation": "suppress"}, retries=10))
    return len(rows)
