"""The suppression list ``<lake>/<control>/suppression`` (Delta): what a completed erasure leaves so dsr can
apply it again (a sweep) without keeping the person's identifiers readable.

One entry per identifier of each completed erasure (the set identity resolution froze, else those filed): its
request id, its identifier kind, when it was added, keyed digests of its canonical value, and a fingerprint of
the key. The digests (:func:`dsr.core.digests.suppression_digest`) are computed by the engines over a table's
rows in SQL, so a sweep finds the erased people's rows without their identifiers:

- a declared kind's entry holds one digest, of the canonical value under the kind's own secret
  (:func:`dsr.core.digests.kind_secret`): a sweep compares it only with the subject columns of that kind (their
  values normalised first when the kind normalises), so a user id ``77`` never matches a customer number 77;
- the implicit kind's entry (a policy without ``identifiers``; ``kind`` NULL, as every entry written before
  kinds existed) holds the id as text (string columns) and as a canonical integer (integer columns, when the
  id is one), under the list's secret, as it always did.

Entries survive the purge's data minimisation (they never held an identifier); the key is the pseudonym key.
Entries are added when an erasure completes (the ``complete`` step, when the key is set), and by ``ensure`` for
any completed erasure still missing them whose identifiers are still known (before a sweep, and before the
purge replaces them in the control table by digests). Appends only; a request's entries are added at once, once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dsr.core.digests import key_check, kind_secret, suppression_digest, suppression_secret
from dsr.core.identifiers import IMPLICIT, Identifier
from dsr.core.policy import Policy
from dsr.core.requests import Request
from dsr.core.subjects import cast_subject
from dsr.delta import storage
from dsr.delta import tables as deltautil
from dsr.errors import PolicyError

__all__ = ["ADDED_COLUMNS", "Entries", "check_key", "digests_of", "ensure", "entry_digests", "load", "uri"]


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
        pa.field("kind", pa.string()),
    ])


ADDED_COLUMNS = ("kind",)
"""Columns added after the first release (NULL in older entries: the implicit kind)."""


def digests_of(secret: str, subject_id: str) -> tuple[str, str | None]:
    """(text digest, integer digest or None): the id as a string column holds it, and as an integer column
    holds it (canonical: ``+12`` and ``012`` are 12), when it is one."""
    import pyarrow as pa

    as_int = cast_subject(subject_id, pa.int64())
    return suppression_digest(secret, subject_id), None if as_int is None else suppression_digest(secret, str(as_int))


def entry_digests(secret: str, identifier: Identifier) -> tuple[str | None, str, str | None]:
    """(kind, text digest, integer digest) of one identifier's entry: the implicit kind's as :func:`digests_of`
    (kind NULL); a declared kind's, one digest of its canonical value under the kind's secret."""
    if identifier.kind == IMPLICIT:
        return (None, *digests_of(secret, identifier.value))
    return identifier.kind, suppression_digest(kind_secret(secret, identifier.kind), identifier.value), None


@dataclass(frozen=True)
class Entries:
    """The suppression list as loaded: digests to match per identifier kind, and what they stand for (counts and
    request ids). Arrow arrays throughout, one element per entry: the list grows with every erasure ever done,
    and only matched digests are ever looked up one by one."""

    request_ids: Any  # pyarrow string array: the request of each entry
    text: Any  # pyarrow string array: the text digest of each entry
    integer: Any  # pyarrow string array: the integer digest of each (null when the id is no integer, or typed)
    added_through: dt.datetime | None  # the newest entry's time
    kinds: Any = None  # pyarrow string array: the identifier kind of each entry (None: all implicit)

    def __len__(self) -> int:
        """The number of erasures listed (a request has an entry per identifier)."""
        import pyarrow.compute as pc

        return int(pc.count_distinct(self.request_ids).as_py()) if len(self.request_ids) else 0

    def _kinds(self) -> Any:
        import pyarrow as pa

        return self.kinds if self.kinds is not None else pa.array([IMPLICIT] * len(self.request_ids), pa.string())

    def _of(self, kind: str) -> Any:
        """A boolean mask of the entries of ``kind``."""
        import pyarrow.compute as pc

        return pc.equal(self._kinds(), kind)

    def listed_kinds(self) -> set[str]:
        """The identifier kinds the list holds entries of."""
        import pyarrow.compute as pc

        return {str(k) for k in pc.unique(self._kinds()).to_pylist()}

    def digests(self, as_int: bool = False, kind: str = IMPLICIT) -> Any:
        """The distinct digests to match in a column of ``kind``, sorted (nulls dropped); the implicit kind's as
        text or, ``as_int``, as an integer."""
        import pyarrow.compute as pc

        values = (self.integer if as_int else self.text).filter(self._of(kind))
        return pc.unique(values.drop_null()).sort()

    def requests_of(self, kind: str) -> int:
        """How many erasures have an entry of ``kind``."""
        import pyarrow.compute as pc

        mine = self.request_ids.filter(self._of(kind))
        return int(pc.count_distinct(mine).as_py()) if len(mine) else 0

    def missing(self, request_ids: Sequence[str]) -> list[str]:
        """The request ids among ``request_ids`` that have no entry (compared in Arrow)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = pa.array(request_ids, pa.string())
        return [str(i) for i in wanted.filter(pc.invert(pc.is_in(wanted, value_set=self.request_ids))).to_pylist()]

    def request_of(self, digest: str, as_int: bool = False, kind: str = IMPLICIT) -> str | None:
        """The request an entry of ``kind`` with this digest belongs to (the first such entry)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        mine = self._of(kind)
        values, rids = (self.integer if as_int else self.text).filter(mine), self.request_ids.filter(mine)
        at = pc.index(values, pa.scalar(digest, pa.string())).as_py()
        return None if at < 0 else str(rids[at].as_py())


def load(policy: Policy, key: bytes, also: Sequence[Request] = ()) -> Entries:
    """Every entry (once each: an entry added twice by two racing writers counts once), plus in memory those of
    the completed erasures in ``also`` that have none yet (a dry run adds nothing to the table). PolicyError
    when an entry was written with another key: a sweep with the wrong key would match nobody and report a clean
    table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = deltautil.open_table(uri(policy))
    data = _schema().empty_table() if table is None else deltautil.read_all(table, schema=_schema(),
                                                                             fill=ADDED_COLUMNS)
    todo = _todo(also)
    if todo:
        listed = pc.is_in(pa.array([r.request_id for r in todo], pa.string()), value_set=data["request_id"])
        new = _new_rows(key, [r for r, known in zip(todo, listed.to_pylist(), strict=True) if not known])
        data = pa.concat_tables([data, pa.Table.from_pylist(new, schema=_schema())])
    if data.num_rows and not pc.all(pc.equal(data["key_check"], key_check(key))).as_py():
        check_key(policy, key)  # raises: one wording
    data = data.set_column(data.schema.get_field_index("kind"), "kind", pc.fill_null(data["kind"], IMPLICIT))
    first = (data.sort_by([("added_at", "ascending")])
             .group_by(["request_id", "kind", "digest_text"], use_threads=False)
             .aggregate([("digest_int", "first"), ("added_at", "first")]))
    newest = pc.max(first["added_at_first"]).as_py() if first.num_rows else None
    return Entries(request_ids=first["request_id"].combine_chunks(), text=first["digest_text"].combine_chunks(),
                   integer=first["digest_int_first"].combine_chunks(), added_through=newest,
                   kinds=first["kind"].combine_chunks())


def check_key(policy: Policy, key: bytes) -> None:
    """PolicyError (nothing written) when entries of the list were made with another key than ``key``: a purge
    would digest the control table with the wrong key, a sweep match nobody."""
    import pyarrow.compute as pc

    table = deltautil.open_table(uri(policy))
    if table is None:
        return
    checks = deltautil.read_all(table, ["key_check"])["key_check"]
    if len(checks) and not pc.all(pc.equal(checks, key_check(key))).as_py():
        raise PolicyError(f"the suppression list at {uri(policy)} was written with another key than "
                          f"${policy.pseudonym_key_env}: set the key its entries were made with")


def _todo(requests: Sequence[Request]) -> list[Request]:
    return [r for r in requests if r.kind == "erase" and r.status == "completed" and not r.minimised]


def _new_rows(key: bytes, requests: Sequence[Request]) -> list[dict[str, Any]]:
    """The entries of these requests: one per identifier (the frozen resolved set, else those filed)."""
    secret = suppression_secret(key)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for r in requests:
        for identifier in dict.fromkeys(r.ids):
            kind, text, integer = entry_digests(secret, identifier)
            rows.append({"request_id": r.request_id, "added_at": now, "digest_text": text, "digest_int": integer,
                         "key_check": key_check(key), "kind": kind})
    return rows


def ensure(policy: Policy, key: bytes, requests: Sequence[Request]) -> int:
    """Add the entries of each completed erasure among ``requests`` that has none and whose identifiers are
    still known; returns how many entries were added (one commit)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    todo = _todo(requests)
    if not todo:
        return 0
    table = deltautil.create_if_missing(uri(policy), _schema(), name="dsr_suppression",
                                        description="dsr-lake suppression list: keyed digests of erased subjects")
    deltautil.add_missing_columns(table, _schema(), ADDED_COLUMNS)
    have = set(deltautil.read_where(table, "request_id", [r.request_id for r in todo], ["request_id"])
               .column(0).to_pylist())  # a filtered read: the list grows with every erasure ever done
    todo = [r for r in todo if r.request_id not in have]
    if not todo:
        return 0
    rows = _new_rows(key, todo)
    write_deltalake(table, pa.Table.from_pylist(rows, schema=_schema()), mode="append",
                    commit_properties=deltautil.commit_properties({"dsr.operation": "suppress"}, retries=10))
    return len(rows)
