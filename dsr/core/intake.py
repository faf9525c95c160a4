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
from dsr.core.identifiers import IMPLICIT, Identifier, identities_json, parse_kind_value
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
from dsr.core.subjects import check_text
from dsr.delta import tables as deltautil
from dsr.errors import InputError

__all__ = ["identifiers_of", "import_csv", "submit"]


@dataclass(frozen=True)
class _Intake:
    kind: str
    ids: tuple[Identifier, ...]  # the first is the one the request names (its subject_id and id_kind)
    ticket: str | None
    requested_by: str | None
    format: str = "json"  # exports only
    recipient_key: str | None = None  # exports only: PEM of the person's public key (client-side encryption)


def identifiers_of(policy: Policy, subject_id: str | None, ids: Sequence[str | Identifier], where: str,
                   id_kind: str | None = None) -> tuple[Identifier, ...]:
    """The canonical identifiers of a request: a plain subject id (of ``id_kind``, else of the policy's one kind)
    and/or ``KIND=VALUE`` texts. InputError naming the kind, never the value, when one does not fit."""
    kinds = policy.kinds
    out: list[Identifier] = []
    if subject_id is not None:
        if id_kind:
            if id_kind not in kinds:
                raise InputError(f"{where}: unknown identifier kind {id_kind!r} (the policy declares: "
                                 f"{', '.join(sorted(kinds))})")
            out.append(Identifier(id_kind, kinds[id_kind].canonical(subject_id, f"{where}: {id_kind}")))
        else:
            out.append(parse_kind_value(subject_id, kinds, f"{where}: subject id"))
    for i in ids:
        if isinstance(i, Identifier):
            if i.kind not in kinds:
                raise InputError(f"{where}: unknown identifier kind {i.kind!r}")
            out.append(Identifier(i.kind, kinds[i.kind].canonical(i.value, f"{where}: {i.kind}")))
        else:
            out.append(parse_kind_value(i, kinds, f"{where}: --id"))
    if not out:
        raise InputError(f"{where}: name the person: a subject id, or --id KIND=VALUE")
    return tuple(dict.fromkeys(out))


def _check_intake(kind: str, ids: tuple[Identifier, ...], ticket: str | None, by: str | None, where: str,
                  fmt: str | None = None, recipient_key: str | None = None) -> _Intake:
    if kind not in KINDS:
        raise InputError(f"{where}: unknown kind {kind!r} (use erase or export)")
    for label, text in (("ticket", ticket), ("requested_by", by)):
        check_text(text, f"{where}: {label}")
    if kind != "export" and (fmt or recipient_key):
        raise InputError(f"{where}: a format or recipient key applies to export requests only")
    fmt = check_format(fmt or "json", f"{where}: format")
    return _Intake(kind, ids, ticket or None, by or None, fmt, recipient_key)


def submit(
    policy: Policy, kind: str, subject_id: str | None = None, *, ids: Sequence[str | Identifier] = (),
    ticket: str | None = None, requested_by: str | None = None, export_format: str | None = None,
    recipient_key: str | None = None,
) -> tuple[str, bool]:
    """File one request for a person named by ``subject_id`` (a plain id: the policy's one kind) and/or ``ids``
    (``KIND=VALUE`` texts or Identifiers; the first named is the request's ``subject_id``). Returns (request id,
    created); an open duplicate (same kind, same first identifier) returns its id, created False. An export's
    format (json, csv) and recipient public key (PEM) are kept in its ``received`` audit event."""
    who = identifiers_of(policy, subject_id, ids, "request")
    item = _check_intake(kind, who, ticket, requested_by, "request", export_format, recipient_key)
    (rid, created), = _add(policy, [item])
    return rid, created


def import_csv(policy: Policy, path: str) -> list[tuple[str, bool]]:
    """Import ``kind,subject_id[,id_kind,ticket,requested_by,format]`` rows: all or nothing."""
    items = _read_csv(policy, path)
    return _add(policy, items)


_CSV_HEADER = "kind,subject_id[,id_kind,ticket,requested_by,format]"


def _read_csv(policy: Policy, path: str) -> list[_Intake]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise InputError(f"{path}: empty file (expected header {_CSV_HEADER})") from None
            header = [h.strip().lstrip("\ufeff") for h in header]
            allowed = ["kind", "subject_id", "id_kind", "ticket", "requested_by", "format"]
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
                where = f"{path}: line {line}"
                who = identifiers_of(policy, rec["subject_id"], (), where, rec.get("id_kind", "").strip() or None)
                items.append(_check_intake(
                    rec["kind"].strip(), who, rec.get("ticket") or None,
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
        open_ids = {(r.kind, r.id_kind or IMPLICIT, r.subject_id): r.request_id
                    for r in read_requests(table, open_in=policy)}
        out: list[tuple[str, bool]] = []
        new_rows: list[dict[str, Any]] = []
        for rid, it in zip(fresh_ids, items, strict=True):
            first = it.ids[0]
            existing = open_ids.get((it.kind, first.kind, first.value))
            if existing is not None:
                out.append((existing, False))
                continue
            open_ids[(it.kind, first.kind, first.value)] = rid
            out.append((rid, True))
            options[rid] = ({"format": it.format} if it.kind == "export" else {}) | (
                {"recipient_key": it.recipient_key} if it.recipient_key else {})
            new_rows.append({
                "request_id": rid, "kind": it.kind, "subject_id": first.value, "status": "pending",
                "ticket": it.ticket, "requested_by": it.requested_by, "received_at": now, "due_at": due,
                "updated_at": now, "attempts": 0, "run_id": None, "lease_until": None, "error": None,
                "export_uri": None, "result": None,
                "id_kind": None if first.kind == IMPLICIT else first.kind,
                "identities": None if it.ids == (first,) else identities_json(it.ids),
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


