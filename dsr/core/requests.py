"""The control table ``<lake>/<control>/requests`` (Delta): what a request is, and reading requests.

One row per request: request_id, kind (erase | export), subject_id, status, ticket, requested_by, received_at,
due_at, updated_at, attempts, run_id, lease_until, error, export_uri, result (JSON). Reads of a few requests (of
a run, by id, of some subjects) use a pushed-down filter rather than reading the whole table.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dsr.core.identifiers import IMPLICIT, Identifier
from dsr.core.masks import SUBJECT_DIGEST_PREFIX
from dsr.core.policy import Policy
from dsr.delta import tables as deltautil
from dsr.errors import InputError

__all__ = [
    "KINDS",
    "OPEN",
    "REQUEST_ID_PATTERN",
    "RUN_ID_PATTERN",
    "STATUSES",
    "Request",
    "audit_readable",
    "check_request_id",
    "check_run_id",
    "is_open",
    "list_open",
    "list_requests",
    "live_run_ids",
    "live_runs",
    "new_request_id",
    "new_run_id",
    "open_requests",
    "read_requests",
    "request_ids",
    "request_ids_received",
    "schema",
    "utc_now",
]

KINDS = ("erase", "export")
STATUSES = ("pending", "running", "completed", "failed")
OPEN = ("pending", "running")


def schema() -> Any:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("subject_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("ticket", pa.string()),
        pa.field("requested_by", pa.string()),
        pa.field("received_at", ts, nullable=False),
        pa.field("due_at", ts, nullable=False),
        pa.field("updated_at", ts, nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("run_id", pa.string()),
        pa.field("lease_until", ts),
        pa.field("error", pa.string()),
        pa.field("export_uri", pa.string()),
        pa.field("result", pa.string()),
        pa.field("id_kind", pa.string()),
        pa.field("identities", pa.string()),
    ])


ADDED_COLUMNS = ("id_kind", "identities")
"""Columns added after the first release: a control table written before them is given them (NULL) on its
first write, and reads fill them with NULL until then."""


@dataclass(frozen=True)
class Request:
    request_id: str
    kind: str
    subject_id: str
    status: str
    ticket: str | None
    requested_by: str | None
    received_at: dt.datetime
    due_at: dt.datetime
    updated_at: dt.datetime
    attempts: int
    run_id: str | None
    lease_until: dt.datetime | None
    error: str | None
    export_uri: str | None
    result: str | None
    id_kind: str | None = None
    """The kind of ``subject_id`` (NULL: the implicit kind of a policy without ``identifiers``)."""
    identities: str | None = None
    """JSON ``{"given": [[kind, value], ...], "resolved": [[kind, value], ...]}``: the identifiers filed with the
    request and, once claimed, the set identity resolution froze (a retry erases exactly that set). Personal
    data: minimised by purge, as ``subject_id`` is."""

    def given(self) -> tuple[Identifier, ...]:
        """The identifiers the request was filed with."""
        doc = json.loads(self.identities) if self.identities else {}
        if doc.get("given"):
            return tuple(Identifier(str(k), str(v)) for k, v in doc["given"])
        return (Identifier(self.id_kind or IMPLICIT, self.subject_id),)

    @property
    def resolved(self) -> tuple[Identifier, ...] | None:
        """The frozen set identity resolution found at the claim, or None before it."""
        doc = json.loads(self.identities) if self.identities else {}
        got = doc.get("resolved")
        return None if got is None else tuple(Identifier(str(k), str(v)) for k, v in got)

    @property
    def ids(self) -> tuple[Identifier, ...]:
        """The person's identifiers: the resolved set once there is one, else those filed."""
        got = self.resolved
        return got if got is not None else self.given()

    @property
    def values(self) -> list[str]:
        """Every identifier value the request holds (to keep them out of error texts)."""
        return sorted({self.subject_id, *(i.value for i in self.given()), *(i.value for i in self.resolved or ())})

    @property
    def minimised(self) -> bool:
        """Its subject id was replaced by a keyed digest after a purge: the raw id is no longer known."""
        return self.subject_id.startswith(SUBJECT_DIGEST_PREFIX)

    def overdue(self, now: dt.datetime) -> bool:
        return self.status != "completed" and self.due_at < now

    def result_json(self) -> dict[str, Any]:
        return json.loads(self.result) if self.result else {}

    def public(self, now: dt.datetime) -> dict[str, Any]:
        """A JSON-ready dict for ``dsr requests --json``."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.isoformat() if isinstance(v, dt.datetime) else v
        out["id_kind"] = self.id_kind or IMPLICIT
        out["identities"] = json.loads(self.identities) if self.identities else None
        out["result"] = self.result_json() or None
        out["overdue"] = self.overdue(now)
        return out


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id() -> str:
    return "run_" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:8]


RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_run_id(run_id: str) -> str:
    """A run (batch) id given from outside (``dsr run --run-id``, the DAG): it names export folders and goes
    into Delta metadata, so letters, digits, ``_``, ``.`` and ``-`` only, at most 128. InputError otherwise."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise InputError(f"run id {run_id!r}: use 1-128 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return run_id


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:16]


REQUEST_ID_PATTERN = re.compile(r"req_[0-9a-f]{16}")


def check_request_id(request_id: str) -> str:
    """A request id given on the command line. Not echoed when malformed: it may be a subject id typed by
    mistake."""
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise InputError("not a request id (req_ followed by 16 hex digits)")
    return request_id


def open_requests(policy: Policy) -> Any:
    """The control table, for a write: created when missing; given the columns added since it was written."""
    table = deltautil.create_if_missing(
        policy.requests_uri, schema(), name="dsr_requests", description="dsr-lake data-subject requests"
    )
    deltautil.add_missing_columns(table, schema(), ADDED_COLUMNS)
    return table


def read_requests(
    table: Any, where: tuple[str, Iterable[str]] | None = None, *, statuses: Iterable[str] | None = None,
    open_in: Policy | None = None,
) -> list[Request]:
    """Requests of the table's loaded version: all (a full read), or those whose column is in the values; only
    those with one of ``statuses``, or only the open ones (:func:`is_open` under the policy ``open_in``), when
    given. The status filters run on the Arrow columns, so a long history of completed requests is never turned
    into Python objects."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if where is None and open_in is not None:
        where = ("status", [*OPEN, "failed"])  # pushed down: files of completed requests only are skipped
    elif where is None and statuses is not None:
        where = ("status", statuses)
    data = (deltautil.read_all(table, schema=schema(), fill=ADDED_COLUMNS) if where is None
            else deltautil.read_where(table, where[0], where[1], schema=schema(), fill=ADDED_COLUMNS))
    if statuses is not None:
        data = data.filter(pc.is_in(data["status"], value_set=pa.array(sorted(set(statuses)), pa.string())))
    if open_in is not None:
        retried = pc.and_(pc.equal(data["status"], "failed"), pc.less(data["attempts"], open_in.max_attempts))
        data = data.filter(pc.or_(pc.is_in(data["status"], value_set=pa.array(OPEN, pa.string())), retried))
    return [Request(**r) for r in data.to_pylist()]


def request_ids(policy: Policy, *, status: str, kind: str, updated_since: dt.datetime | None = None) -> list[str]:
    """The ids of the requests of one kind and status (changed at or after ``updated_since`` when given: files
    whose statistics say otherwise are skipped), oldest first, read as a few columns (no row becomes a Python
    object but the ids)."""
    return request_ids_received(policy, status=status, kind=kind, updated_since=updated_since)[0]


def request_ids_received(
    policy: Policy, *, status: str, kind: str, updated_since: dt.datetime | None = None,
) -> tuple[list[str], dt.datetime | None]:
    """:func:`request_ids`, and when the oldest of them was received (None when there is none), from one read."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = deltautil.open_table(policy.requests_uri)
    if table is None:
        return [], None
    columns = ["request_id", "kind", "status", "received_at", "updated_at"]
    if updated_since is None:
        data = deltautil.read_all(table, columns=columns)
    else:
        recent = ds.field("updated_at") >= pa.scalar(updated_since, pa.timestamp("us", tz="UTC"))
        data = deltautil.read_where(table, "status", [status], columns, also=recent)
    data = data.filter(pc.and_(pc.equal(data["status"], status), pc.equal(data["kind"], kind)))
    data = data.sort_by([("received_at", "ascending"), ("request_id", "ascending")])
    oldest = data["received_at"][0].as_py() if data.num_rows else None
    return [str(i) for i in data["request_id"].to_pylist()], oldest


def list_requests(
    policy: Policy, *, status: str | None = None, ids: Iterable[str] | None = None, run_id: str | None = None,
    subjects: Iterable[str] | None = None,
) -> list[Request]:
    """Requests, oldest first; only those with ``status``, among ``ids``, of ``run_id`` or of ``subjects`` when
    given (the last three are read with a pushed-down filter, not by reading the whole table)."""
    if status is not None and status not in STATUSES:
        raise InputError(f"unknown status {status!r} (use one of: {', '.join(STATUSES)})")
    table = deltautil.open_table(policy.requests_uri)
    if table is None:
        return []
    wanted = set(ids) if ids is not None else None
    people = set(subjects) if subjects is not None else None
    statuses = None if status is None else [status]
    if run_id is not None:
        found = read_requests(table, ("run_id", [run_id]), statuses=statuses)
    elif wanted is not None:
        found = read_requests(table, ("request_id", wanted), statuses=statuses)
    elif people is not None:
        found = read_requests(table, ("subject_id", people), statuses=statuses)
    else:
        found = read_requests(table, statuses=statuses)
    rows = [
        r for r in found
        if (wanted is None or r.request_id in wanted)
        and (run_id is None or r.run_id == run_id) and (people is None or r.subject_id in people)
    ]
    return sorted(rows, key=lambda r: (r.received_at, r.request_id))


def list_open(policy: Policy) -> list[Request]:
    """The open requests (:func:`is_open`), oldest first: a filtered read, whatever the history's length."""
    table = deltautil.open_table(policy.requests_uri)
    if table is None:
        return []
    return sorted(read_requests(table, open_in=policy), key=lambda r: (r.received_at, r.request_id))


def live_run_ids(policy: Policy, now: dt.datetime | None = None) -> set[str]:
    """Run ids that still hold a request under an unexpired lease (their export parts are in use)."""
    return live_runs(list_requests(policy, status="running"), now or utc_now())


def live_runs(requests: Iterable[Request], at: dt.datetime) -> set[str]:
    return {r.run_id for r in requests
            if r.status == "running" and r.run_id and r.lease_until is not None and r.lease_until >= at}


def is_open(r: Request, policy: Policy) -> bool:
    """Still to be done: pending, running, or failed with attempts left (the next run retries it)."""
    return r.status in OPEN or (r.status == "failed" and r.attempts < policy.max_attempts)


def audit_readable(policy: Policy) -> None:
    """StoreError before any write when the audit log cannot be read (its log does not open, or a data file is
    missing): every change here is audited. Looks at the log and the files, reads no rows."""
    log = deltautil.open_table(policy.audit_uri)
    if log is not None:
        deltautil.check_files(log)


