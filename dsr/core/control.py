"""The control table ``<lake>/<control>/requests`` (Delta): intake, dedupe, atomic claim, status changes.

Lifecycle: ``pending -> running -> completed | failed``. A failed request is claimed again by the next run
until it has been attempted ``max_attempts`` times; then it stays failed. A ``running`` claim carries a lease
(``lease_until``); a run that dies leaves its requests to the next run once the lease has expired.

Every write commits with no silent rebase: when two writers race, one commit fails, re-reads and decides
again, so two runs never claim the same request. Predicates name columns only, so subject ids never reach
the Delta commit info.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsr.core import audit
from dsr.core.policy import Policy
from dsr.core.subjects import check_subject_id, check_text
from dsr.delta import tables as deltautil
from dsr.errors import InputError

__all__ = [
    "KINDS",
    "STATUSES",
    "Request",
    "claim",
    "complete",
    "fail",
    "import_csv",
    "is_open",
    "list_requests",
    "live_run_ids",
    "new_run_id",
    "release",
    "renew_lease",
    "submit",
]

KINDS = ("erase", "export")
STATUSES = ("pending", "running", "completed", "failed")
_OPEN = ("pending", "running")


def _schema() -> Any:
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
    ])


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

    def overdue(self, now: dt.datetime) -> bool:
        return self.status != "completed" and self.due_at < now

    def result_json(self) -> dict[str, Any]:
        return json.loads(self.result) if self.result else {}

    def public(self, now: dt.datetime) -> dict[str, Any]:
        """A JSON-ready dict for ``dsr requests --json``."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.isoformat() if isinstance(v, dt.datetime) else v
        out["result"] = self.result_json() or None
        out["overdue"] = self.overdue(now)
        return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id() -> str:
    return "run_" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:8]


def _new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:16]


def _open(policy: Policy) -> Any:
    return deltautil.create_if_missing(
        policy.requests_uri, _schema(), name="dsr_requests", description="dsr-lake data-subject requests"
    )


def _rows(table: Any, where: tuple[str, Iterable[str]] | None = None) -> list[Request]:
    """Requests of the table's loaded version: all (a full read), or those whose column is in the values."""
    data = (deltautil.read_all(table, schema=_schema()) if where is None
            else deltautil.read_where(table, where[0], where[1], schema=_schema()))
    return [Request(**r) for r in data.to_pylist()]


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
    if run_id is not None:
        found = _rows(table, ("run_id", [run_id]))
    elif wanted is not None:
        found = _rows(table, ("request_id", wanted))
    elif people is not None:
        found = _rows(table, ("subject_id", people))
    else:
        found = _rows(table)
    rows = [
        r for r in found
        if (status is None or r.status == status) and (wanted is None or r.request_id in wanted)
        and (run_id is None or r.run_id == run_id) and (people is None or r.subject_id in people)
    ]
    return sorted(rows, key=lambda r: (r.received_at, r.request_id))


# --- intake ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Intake:
    kind: str
    subject_id: str
    ticket: str | None
    requested_by: str | None


def _check_intake(kind: str, subject_id: str, ticket: str | None, by: str | None, where: str) -> _Intake:
    if kind not in KINDS:
        raise InputError(f"{where}: unknown kind {kind!r} (use erase or export)")
    check_subject_id(subject_id, f"{where}: subject id")
    for label, text in (("ticket", ticket), ("requested_by", by)):
        check_text(text, f"{where}: {label}")
    return _Intake(kind, subject_id, ticket or None, by or None)


def submit(
    policy: Policy, kind: str, subject_id: str, *, ticket: str | None = None, requested_by: str | None = None
) -> tuple[str, bool]:
    """File one request. Returns (request id, created); an open duplicate returns its id, created False."""
    item = _check_intake(kind, subject_id, ticket, requested_by, "request")
    (rid, created), = _add(policy, [item])
    return rid, created


def import_csv(policy: Policy, path: str) -> list[tuple[str, bool]]:
    """Import ``kind,subject_id[,ticket,requested_by]`` rows: all or nothing."""
    items = _read_csv(path)
    return _add(policy, items)


_CSV_HEADER = "kind,subject_id[,ticket,requested_by]"


def _read_csv(path: str) -> list[_Intake]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise InputError(f"{path}: empty file (expected header {_CSV_HEADER})") from None
            header = [h.strip().lstrip("\ufeff") for h in header]
            allowed = ["kind", "subject_id", "ticket", "requested_by"]
            if (header[:2] != ["kind", "subject_id"] or any(h not in allowed for h in header)
                    or len(set(header)) != len(header)):
                raise InputError(f"{path}: line 1: header must be {_CSV_HEADER}")
            items = []
            for row in reader:
                line = reader.line_num
                if not row or all(not c for c in row):
                    continue
                if len(row) != len(header):
                    raise InputError(f"{path}: line {line}: expected {len(header)} fields, got {len(row)}")
                rec = dict(zip(header, row, strict=True))
                items.append(_check_intake(
                    rec["kind"].strip(), rec["subject_id"], rec.get("ticket") or None,
                    rec.get("requested_by") or None, f"{path}: line {line}",
                ))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not valid CSV ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if not items:
        raise InputError(f"{path}: no requests after the header")
    return items


def _audit_readable(policy: Policy) -> None:
    """StoreError before any write when the audit log cannot be read (its log does not open, or a data file is
    missing): every change here is audited. Looks at the log and the files, reads no rows."""
    log = deltautil.open_table(policy.audit_uri)
    if log is not None:
        deltautil.check_files(log)


def _add(policy: Policy, items: Sequence[_Intake]) -> list[tuple[str, bool]]:
    import pyarrow as pa
    from deltalake import write_deltalake

    _audit_readable(policy)
    table = _open(policy)
    now = _now()
    due = now + dt.timedelta(days=policy.due_days)
    fresh_ids = [_new_request_id() for _ in items]

    def attempt() -> tuple[list[tuple[str, bool]], list[dict[str, Any]]]:
        table.update_incremental()
        open_ids = {(r.kind, r.subject_id): r.request_id for r in _rows(table) if is_open(r, policy)}
        out: list[tuple[str, bool]] = []
        new_rows: list[dict[str, Any]] = []
        for rid, it in zip(fresh_ids, items, strict=True):
            existing = open_ids.get((it.kind, it.subject_id))
            if existing is not None:
                out.append((existing, False))
                continue
            open_ids[(it.kind, it.subject_id)] = rid
            out.append((rid, True))
            new_rows.append({
                "request_id": rid, "kind": it.kind, "subject_id": it.subject_id, "status": "pending",
                "ticket": it.ticket, "requested_by": it.requested_by, "received_at": now, "due_at": due,
                "updated_at": now, "attempts": 0, "run_id": None, "lease_until": None, "error": None,
                "export_uri": None, "result": None,
            })
        if new_rows:
            write_deltalake(
                table, pa.Table.from_pylist(new_rows, schema=_schema()), mode="append",
                commit_properties=deltautil.commit_properties({"dsr.operation": "intake"}),
            )
        return out, new_rows

    out, new_rows = deltautil.optimistic(attempt, what="request intake")
    audit.append(policy, [
        audit.AuditEvent(
            "received", request_id=r["request_id"],
            details={"kind": r["kind"], "ticket": r["ticket"], "due_at": r["due_at"].isoformat()},
        )
        for r in new_rows
    ], now=now)
    return out


# --- claim and status changes ----------------------------------------------------------------------------


def live_run_ids(policy: Policy, now: dt.datetime | None = None) -> set[str]:
    """Run ids that still hold a request under an unexpired lease (their export parts are in use)."""
    return _live(list_requests(policy, status="running"), now or _now())


def _live(requests: Iterable[Request], at: dt.datetime) -> set[str]:
    return {r.run_id for r in requests
            if r.status == "running" and r.run_id and r.lease_until is not None and r.lease_until >= at}


def is_open(r: Request, policy: Policy) -> bool:
    """Still to be done: pending, running, or failed with attempts left (the next run retries it)."""
    return r.status in _OPEN or (r.status == "failed" and r.attempts < policy.max_attempts)


def _claimable(r: Request, policy: Policy, now: dt.datetime) -> bool:
    if r.status == "pending":
        return True
    if r.status == "failed":
        return r.attempts < policy.max_attempts
    if r.status == "running":
        return r.lease_until is not None and r.lease_until < now
    return False


def claim(
    policy: Policy, run_id: str, *, limit: int | None = None, now: dt.datetime | None = None,
    ids: Iterable[str] | None = None, live: set[str] | None = None,
) -> list[Request]:
    """Atomically move claimable requests to ``running`` for this run. Returns what this run got.

    ``live``, when given, is filled from the same read with the runs that still hold an unexpired lease.
    """
    import pyarrow as pa

    _audit_readable(policy)
    table = deltautil.open_table(policy.requests_uri)
    if table is None:
        return []
    wanted = set(ids) if ids is not None else None

    def attempt() -> list[Request]:
        at = now or _now()
        lease = at + dt.timedelta(minutes=policy.claim_ttl_minutes)
        table.update_incremental()
        everything = _rows(table)
        if live is not None:
            live.clear()
            live.update(_live(everything, at))
        rows = sorted(
            (r for r in everything if _claimable(r, policy, at) and (wanted is None or r.request_id in wanted)),
            key=lambda r: (r.received_at, r.request_id),
        )
        if limit is not None:
            rows = rows[:limit]
        if not rows:
            return []
        source = pa.table({
            "request_id": [r.request_id for r in rows],
            "run_id": [run_id] * len(rows),
            "now": pa.array([at] * len(rows), pa.timestamp("us", tz="UTC")),
            "lease_until": pa.array([lease] * len(rows), pa.timestamp("us", tz="UTC")),
        })
        (
            table.merge(
                source, predicate="t.request_id = s.request_id", source_alias="s", target_alias="t",
                commit_properties=deltautil.commit_properties({"dsr.operation": "claim", "dsr.run_id": run_id}),
            )
            .when_matched_update(updates={
                "status": "'running'", "run_id": "s.run_id", "attempts": "t.attempts + 1",
                "updated_at": "s.now", "lease_until": "s.lease_until", "error": "NULL",
            })
            .execute()
        )
        return [
            Request(**{**r.__dict__, "status": "running", "run_id": run_id, "attempts": r.attempts + 1,
                       "updated_at": at, "lease_until": lease, "error": None})
            for r in rows
        ]

    got = deltautil.optimistic(attempt, what="claim")
    if got:
        audit.append(policy, [
            audit.AuditEvent("claimed", request_id=r.request_id, run_id=run_id, details={"attempt": r.attempts})
            for r in got
        ])
    return got


def _transition(
    policy: Policy, run_id: str, updates: Sequence[Mapping[str, Any]], set_sql: Mapping[str, str], what: str,
) -> list[str]:
    """Update rows claimed by run_id (only while they are still ``running`` under that run).

    Returns the request ids actually changed: a request whose lease expired and that another run claimed
    since is left alone (and must not be audited as changed by this run).
    """
    import pyarrow as pa

    if not updates:
        return []
    table = _open(policy)
    ts = pa.timestamp("us", tz="UTC")
    fields = [pa.field("request_id", pa.string()), pa.field("run_id", pa.string()), pa.field("now", ts)]
    extra = sorted({k for u in updates for k in u} - {"request_id"})
    for k in extra:
        fields.append(pa.field(k, ts if k == "lease_until" else pa.string()))
    now = _now()
    rows = [{**{k: None for k in extra}, **u, "run_id": run_id, "now": now} for u in updates]

    ids = [str(r["request_id"]) for r in rows]

    def attempt() -> list[str]:
        table.update_incremental()
        metrics = (
            table.merge(
                pa.Table.from_pylist(rows, schema=pa.schema(fields)),
                predicate="t.request_id = s.request_id", source_alias="s", target_alias="t",
                commit_properties=deltautil.commit_properties({"dsr.operation": what, "dsr.run_id": run_id}),
            )
            .when_matched_update(
                updates={**set_sql, "updated_at": "s.now"},
                predicate="t.run_id = s.run_id AND t.status = 'running'",
            )
            .execute()
        )
        if int(metrics.get("num_target_rows_updated", 0)) == len(rows):
            return ids
        # some were no longer ours (a lease ran out and another run took them): ours carry this update's stamp
        table.update_incremental()
        return [r.request_id for r in _rows(table, ("request_id", ids))
                if r.run_id == run_id and r.updated_at == now]

    return deltautil.optimistic(attempt, what=what)


def renew_lease(policy: Policy, run_id: str, request_ids: Iterable[str] | None = None) -> int:
    """Extend the lease of the requests this run still holds (``request_ids``, else all of them) by
    ``claim_ttl_minutes`` from now, so a long run keeps its batch while a dead one loses it."""
    held = list(request_ids) if request_ids is not None else [
        r.request_id for r in list_requests(policy, status="running", run_id=run_id)]
    lease = _now() + dt.timedelta(minutes=policy.claim_ttl_minutes)
    updates = [{"request_id": rid, "lease_until": lease} for rid in held]
    return len(_transition(policy, run_id, updates, {"lease_until": "s.lease_until"}, "renew"))


def complete(policy: Policy, run_id: str, results: Sequence[Mapping[str, Any]]) -> int:
    """Mark requests completed. Each item: request_id, and optionally export_uri and result (a dict)."""
    updates = [
        {"request_id": r["request_id"], "export_uri": r.get("export_uri"),
         "result": json.dumps(r.get("result") or {}, sort_keys=True, default=str)}
        for r in results
    ]
    done = set(_transition(policy, run_id, updates, {
        "status": "'completed'", "export_uri": "coalesce(s.export_uri, t.export_uri)", "result": "s.result",
        "lease_until": "NULL", "error": "NULL",
    }, "complete"))
    audit.append(policy, [
        audit.AuditEvent("completed", request_id=r["request_id"], run_id=run_id,
                         details={"export_uri": r.get("export_uri")} if r.get("export_uri") else {})
        for r in results if r["request_id"] in done
    ])
    return len(done)


def fail(policy: Policy, run_id: str, failures: Mapping[str, str], *, final: Iterable[str] = ()) -> int:
    """Mark requests failed with an error text (which must hold no subject id).

    Requests in ``final`` cannot succeed by retrying (a table no engine here can process): their attempts are
    used up at once, so they stay failed, do not hold back other requests, and are filed again once fixed.
    """
    final_ids = set(final)
    updates = [{"request_id": rid, "error": err[:2000], "final": "1" if rid in final_ids else "0"}
               for rid, err in failures.items()]
    done = set(_transition(policy, run_id, updates, {
        "status": "'failed'", "error": "s.error", "lease_until": "NULL",
        "attempts": f"CASE WHEN s.final = '1' AND t.attempts < {int(policy.max_attempts)} "
                    f"THEN CAST({int(policy.max_attempts)} AS INT) ELSE t.attempts END",
    }, "fail"))
    audit.append(policy, [
        audit.AuditEvent("failed", request_id=rid, run_id=run_id,
                         details={"error": err[:500], **({"final": True} if rid in final_ids else {})})
        for rid, err in failures.items() if rid in done
    ])
    return len(done)


def release(policy: Policy, run_id: str, request_ids: Sequence[str], why: str) -> int:
    """Hand claimed requests back to ``pending`` without counting the attempt (e.g. waiting for an export)."""
    updates = [{"request_id": rid} for rid in request_ids]
    done = set(_transition(policy, run_id, updates, {
        "status": "'pending'", "attempts": "t.attempts - 1", "run_id": "NULL", "lease_until": "NULL",
    }, "release"))
    audit.append(policy, [
        audit.AuditEvent("released", request_id=rid, run_id=run_id, details={"why": why})
        for rid in request_ids if rid in done
    ])
    return len(done)
