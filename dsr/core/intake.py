"""Filing requests: one by one or from a CSV file (all or nothing); an open request for the same (kind,
subject) is not added twice. Every request filed is audited (``received``); nothing is written when any input
is bad."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dsr.core import audit
from dsr.core.delivery import check_format
from dsr.core.policy import Policy
from dsr.core.requests import (
    KINDS,
    audit_readable,
    new_request_id,
    open_requests,
    read_requests,
    schema,
    utc_now,
)
from dsr.core.subjects import check_subject_id, check_text
from dsr.delta import tables as deltautil
from dsr.errors import InputError

__all__ = ["import_csv", "submit"]


@dataclass(frozen=True)
class _Intake:
    kind: str
    subject_id: str
    ticket: str | None
    requested_by: str | None
    format: str = "json"  # exports only
    recipient_key: str | None = None  # exports only: PEM of the person's public key (client-side encryption)


def _check_intake(kind: str, subject_id: str, ticket: str | None, by: str | None, where: str,
                  fmt: str | None = None, recipient_key: str | None = None) -> _Intake:
    if kind not in KINDS:
        raise InputError(f"{where}: unknown kind {kind!r} (use erase or export)")
    check_subject_id(subject_id, f"{where}: subject id")
    for label, text in (("ticket", ticket), ("requested_by", by)):
        check_text(text, f"{where}: {label}")
    if kind != "export" and (fmt or recipient_key):
        raise InputError(f"{where}: a format or recipient key applies to export requests only")
    fmt = check_format(fmt or "json", f"{where}: format")
    return _Intake(kind, subject_id, ticket or None, by or None, fmt, recipient_key)


def submit(
    policy: Policy, kind: str, subject_id: str, *, ticket: str | None = None, requested_by: str | None = None,
    export_format: str | None = None, recipient_key: str | None = None,
) -> tuple[str, bool]:
    """File one request. Returns (request id, created); an open duplicate returns its id, created False.
    An export's format (json, csv) and recipient public key (PEM) are kept in its ``received`` audit event."""
    item = _check_intake(kind, subject_id, ticket, requested_by, "request", export_format, recipient_key)
    (rid, created), = _add(policy, [item])
    return rid, created


def import_csv(policy: Policy, path: str) -> list[tuple[str, bool]]:
    """Import ``kind,subject_id[,ticket,requested_by,format]`` rows: all or nothing."""
    items = _read_csv(path)
    return _add(policy, items)


_CSV_HEADER = "kind,subject_id[,ticket,requested_by,format]"


def _read_csv(path: str) -> list[_Intake]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise InputError(f"{path}: empty file (expected header {_CSV_HEADER})") from None
            header = [h.strip().lstrip("\ufeff") for h in header]
            allowed = ["kind", "subject_id", "ticket", "requested_by", "format"]
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
                    rec.get("requested_by") or None, f"{path}: line {line}", rec.get("format", "").strip() or None,
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


def _add(policy: Policy, items: Sequence[_Intake]) -> list[tuple[str, bool]]:
    import pyarrow as pa
    from deltalake import write_deltalake

    audit_readable(policy)
    table = open_requests(policy)
    now = utc_now()
    due = now + dt.timedelta(days=policy.due_days)
    fresh_ids = [new_request_id() for _ in items]
    options: dict[str, dict[str, str]] = {}

    def attempt() -> tuple[list[tuple[str, bool]], list[dict[str, Any]]]:
        table.update_incremental()
        open_ids = {(r.kind, r.subject_id): r.request_id for r in read_requests(table, open_in=policy)}
        out: list[tuple[str, bool]] = []
        new_rows: list[dict[str, Any]] = []
        for rid, it in zip(fresh_ids, items, strict=True):
            existing = open_ids.get((it.kind, it.subject_id))
            if existing is not None:
                out.append((existing, False))
                continue
            open_ids[(it.kind, it.subject_id)] = rid
            out.append((rid, True))
            options[rid] = ({"format": it.format} if it.kind == "export" else {}) | (
                {"recipient_key": it.recipient_key} if it.recipient_key else {})
            new_rows.append({
                "request_id": rid, "kind": it.kind, "subject_id": it.subject_id, "status": "pending",
                "ticket": it.ticket, "requested_by": it.requested_by, "received_at": now, "due_at": due,
                "updated_at": now, "attempts": 0, "run_id": None, "lease_until": None, "error": None,
                "export_uri": None, "result": None,
            })
        if new_rows:
            write_deltalake(
                table, pa.Table.from_pylist(new_rows, schema=schema()), mode="append",
                commit_properties=deltautil.commit_properties({"dsr.operation": "intake"}),
            )
        return out, new_rows

    out, new_rows = deltautil.optimistic(attempt, what="request intake")
    audit.append(policy, [
        audit.AuditEvent(
            "received", request_id=r["request_id"],
            details={"kind": r["kind"], "ticket": r["ticket"], "due_at": r["due_at"].isoformat(),
                     **options[r["request_id"]]},
        )
        for r in new_rows
    ], now=now)
    return out


