"""Presigned download links to export packages on S3: the TTL rule (at most 7 days, never past the package's
expiry), issuing one, and the audit event that records it (to whom, until when — never the URL or its
signature)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from dsr.core import audit, control
from dsr.core.policy import Policy
from dsr.core.subjects import check_text
from dsr.delta import storage
from dsr.errors import InputError

__all__ = ["MAX_TTL", "Link", "expires_at", "issue_link", "parse_ttl"]

MAX_TTL = dt.timedelta(days=7)  # SigV4 presigned URLs last at most 7 days
_TTL = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class Link:
    request_id: str
    url: str
    ttl_seconds: int
    expires_at: dt.datetime
    issued_for: str | None


def parse_ttl(text: str) -> dt.timedelta:
    """``30m``, ``24h``, ``5d`` (or seconds ``3600s``), at most 7 days; InputError otherwise."""
    m = _TTL.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise InputError("--ttl: use a number and a unit s, m, h or d (e.g. 24h, 5d)")
    ttl = dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    if ttl > MAX_TTL:
        raise InputError("--ttl: a link lasts at most 7 days (7d)")
    return ttl


def expires_at(r: control.Request, policy: Policy) -> dt.datetime:
    """When a completed export's package is deleted (``expires_at`` in its result, else completion + TTL)."""
    stamp = r.result_json().get("expires_at")
    if stamp:
        return dt.datetime.fromisoformat(str(stamp))
    return r.updated_at + dt.timedelta(days=policy.export_ttl_days)


def issue_link(
    policy: Policy, request_id: str, *, ttl: dt.timedelta | None = None, issued_for: str | None = None,
    now: dt.datetime | None = None,
) -> Link:
    """A presigned GET link for a completed export's package, recorded in the audit log. The default TTL is
    what is left until the package expires, at most 7 days. InputError (nothing recorded) for ``issued_for``
    empty or naming the subject, a local exports location, an unknown or unfinished request, an expired package
    or one that is gone from S3."""
    from dsr.exports.s3upload import exists, presign

    if issued_for is not None and not issued_for.strip():
        raise InputError("--for: empty: name who receives the link")
    if not storage.is_remote(policy.exports):
        raise InputError(f"links need an S3 exports location (s3://bucket/prefix); exports are in the local "
                         f"folder {policy.exports}")
    check_text(issued_for, "--for")
    found = control.list_requests(policy, ids=[request_id])
    if not found or found[0].kind != "export":
        raise InputError(f"no export request {request_id}")
    r = found[0]
    if r.status != "completed" or not r.export_uri:
        raise InputError(f"export {request_id} is {r.status}: a link needs a completed export")
    if issued_for and issued_for.strip() == r.subject_id:
        raise InputError("--for must name who receives the link (a name or role), not the subject id")
    at = now or dt.datetime.now(dt.UTC)
    left = expires_at(r, policy) - at
    deleted = any(e["event"] == "export_deleted" for e in audit.events_by_request(policy, [request_id])[request_id])
    if left <= dt.timedelta(0) or deleted:
        raise InputError(f"export {request_id} has expired: its package is deleted (export_ttl_days, or the "
                         "person's erasure was purged)")
    if not exists(r.export_uri):
        raise InputError(f"export {request_id}: its package is gone from {r.export_uri} (deleted outside dsr?): "
                         "no link issued")
    ttl = min(ttl or MAX_TTL, MAX_TTL, left)
    seconds = max(1, int(ttl.total_seconds()))
    url = presign(r.export_uri, seconds)
    link = Link(request_id, url, seconds, at + dt.timedelta(seconds=seconds), issued_for or None)
    audit.append(policy, [audit.AuditEvent("export_link_issued", request_id=request_id, details={
        "for": link.issued_for, "ttl_seconds": seconds, "expires_at": link.expires_at.isoformat()})], now=at)
    return link
