"""The control table ``<lake>/<control>/requests`` (Delta): intake, dedupe, atomic claim, status changes.

Lifecycle: ``pending -> running -> completed | failed``. A failed request is claimed again by the next run
until it has been attempted ``max_attempts`` times; then it stays failed. A ``running`` claim carries a lease
(``lease_until``); a run that dies leaves its requests to the next run once the lease has expired.

Every write commits with no silent rebase: when two writers race, one commit fails, re-reads and decides
again, so two runs never claim the same request. Predicates name columns only, so subject ids never reach
the Delta commit info.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from dsr.core import audit
from dsr.core.intake import import_csv, submit
from dsr.core.policy import Policy
from dsr.core.requests import (
    KINDS,
    STATUSES,
    Request,
    audit_readable,
    check_run_id,
    is_open,
    list_open,
    list_requests,
    live_run_ids,
    live_runs,
    new_run_id,
    open_requests,
    read_requests,
    request_ids,
    request_ids_received,
    utc_now,
)
from dsr.delta import tables as deltautil

__all__ = [
    "KINDS",
    "STATUSES",
    "Request",
    "check_run_id",
    "claim",
    "complete",
    "fail",
    "import_csv",
    "is_open",
    "list_open",
    "list_requests",
    "live_run_ids",
    "minimise",
    "new_run_id",
    "release",
    "renew_lease",
    "request_ids",
    "request_ids_received",
    "set_identities",
    "submit",
]


# --- claim and status changes ----------------------------------------------------------------------------


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
    ids: Iterable[str] | None = None, live: set[str] | None = None, skip: Collection[str] = (),
) -> list[Request]:
    """Atomically move claimable requests to ``running`` for this run. Returns what this run got.

    ``live``, when given, is filled from the same read with the runs that still hold an unexpired lease.
    Requests in ``skip`` are left alone (erasures cooling down).

    Long because the read, the choice and the MERGE form one optimistic attempt (retried as a whole).
    """
    import pyarrow as pa

    audit_readable(policy)
    table = deltautil.open_table(policy.requests_uri)
    if table is None:
        return []
    wanted = set(ids) if ids is not None else None

    def attempt() -> list[Request]:
        at = now or utc_now()
        lease = at + dt.timedelta(minutes=policy.claim_ttl_minutes)
        table.update_incremental()
        everything = read_requests(table, open_in=policy)  # claimable and live requests are all open
        if live is not None:
            live.clear()
            live.update(live_runs(everything, at))
        rows = sorted(
            (r for r in everything if _claimable(r, policy, at) and (wanted is None or r.request_id in wanted)
             and r.request_id not in skip),
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
    table = open_requests(policy)
    ts = pa.timestamp("us", tz="UTC")
    fields = [pa.field("request_id", pa.string()), pa.field("run_id", pa.string()), pa.field("now", ts)]
    extra = sorted({k for u in updates for k in u} - {"request_id"})
    for k in extra:
        fields.append(pa.field(k, ts if k == "lease_until" else pa.string()))
    now = utc_now()
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
        return [r.request_id for r in read_requests(table, ("request_id", ids))
                if r.run_id == run_id and r.updated_at == now]

    return deltautil.optimistic(attempt, what=what)


def renew_lease(policy: Policy, run_id: str, request_ids: Iterable[str] | None = None) -> int:
    """Extend the lease of the requests this run still holds (``request_ids``, else all of them) by
    ``claim_ttl_minutes`` from now, so a long run keeps its batch while a dead one loses it."""
    held = list(request_ids) if request_ids is not None else [
        r.request_id for r in list_requests(policy, status="running", run_id=run_id)]
    lease = utc_now() + dt.timedelta(minutes=policy.claim_ttl_minutes)
    updates = [{"request_id": rid, "lease_until": lease} for rid in held]
    return len(_transition(policy, run_id, updates, {"lease_until": "s.lease_until"}, "renew"))


def set_identities(policy: Policy, run_id: str, identities: Mapping[str, str]) -> list[str]:
    """Freeze the resolved identifiers (request id -> ``identities`` JSON) of requests this run holds. Returns
    the request ids changed."""
    updates = [{"request_id": rid, "identities": text} for rid, text in sorted(identities.items())]
    return _transition(policy, run_id, updates, {"identities": "s.identities"}, "resolve")


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


def minimise(policy: Policy, digests: Mapping[str, str], identities: Mapping[str, str | None] | None = None) -> int:
    """Replace the subject id of completed requests (request id -> digest) by its digest and, when
    ``identities`` is given (request id -> the identities JSON with each value digested), their identities too:
    after a purge the control table keeps no raw identifier of the erased. Returns the table's version after the
    commit."""
    import pyarrow as pa

    table = open_requests(policy)
    with_identities = identities is not None
    rows = [{"request_id": rid, "digest": d, **({"identities": (identities or {}).get(rid)} if with_identities
                                                else {})} for rid, d in sorted(digests.items())]
    fields = [("request_id", pa.string()), ("digest", pa.string())] + (
        [("identities", pa.string())] if with_identities else [])
    updates = {"subject_id": "s.digest", **({"identities": "s.identities"} if with_identities else {})}

    def attempt() -> int:
        table.update_incremental()
        if rows:
            table.merge(
                pa.Table.from_pylist(rows, schema=pa.schema(fields)),
                predicate="t.request_id = s.request_id", source_alias="s", target_alias="t",
                commit_properties=deltautil.commit_properties({"dsr.operation": "minimise"}),
            ).when_matched_update(updates=updates, predicate="t.status = 'completed'").execute()
        return int(table.version())

    return deltautil.optimistic(attempt, what="minimise")
