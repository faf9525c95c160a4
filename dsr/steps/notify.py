"""Telling the person's side that an export package is ready: a JSON POST to the policy's ``notify.webhook``.

The message names the request, its ticket, when the package expires and, with ``notify.link: true`` and an S3
exports location, a presigned link — never the data, never the subject id. Each delivery is tried
``notify.attempts`` times (backoff 1 s, 2 s, ...), each attempt within ``notify.timeout_seconds`` in all and
never following a redirect (:mod:`dsr.steps.webhook`), and recorded in the audit log: ``notified`` (channel,
attempts, HTTP status) or ``notify_failed`` (channel, attempts, the last error, and its HTTP status when the
server answered). A failure never fails the export. A request already ``notified`` on a channel is not sent
again there (a retried step, or the Airflow notifier after the step, sends nothing twice).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import urllib.error
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dsr.core import audit, control
from dsr.core.policy import Policy
from dsr.delta import storage
from dsr.steps import links
from dsr.steps.webhook import post_json

__all__ = ["WEBHOOK", "deliver", "message", "packages_ready"]

log = logging.getLogger("dsr.steps")
WEBHOOK = "webhook"
Send = Callable[[Mapping[str, Any]], Any]


def message(policy: Policy, r: control.Request, *, link: bool) -> dict[str, Any]:
    """The notification of one completed export (no data, no subject id)."""
    out: dict[str, Any] = {"event": "export_ready", "request_id": r.request_id, "ticket": r.ticket,
                           "expires_at": links.expires_at(r, policy).isoformat(),
                           "format": r.result_json().get("format", "json")}
    if link and storage.is_remote(policy.exports):
        issued = links.issue_link(policy, r.request_id, issued_for="notification")
        out.update({"link": issued.url, "link_expires_at": issued.expires_at.isoformat()})
    return out


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}" + (": redirects are not followed" if 300 <= exc.code < 400 else "")
    return f"{type(exc).__name__}: {str(getattr(exc, 'reason', '') or exc)[:200]}"


def deliver(
    policy: Policy, request_ids: Sequence[str], send: Send, *, channel: str, attempts: int = 3,
    link: bool = False, backoff: float = 1.0,
) -> dict[str, bool]:
    """Send each completed export's message through ``send`` (retried), recording the outcome in the audit
    log; requests already notified on ``channel`` are skipped. Returns request id -> delivered. Never raises."""
    out: dict[str, bool] = {}
    try:
        events = audit.events_by_request(policy, request_ids)
        todo = [r for r in control.list_requests(policy, ids=request_ids)
                if r.kind == "export" and r.status == "completed" and not any(
                    e["event"] == "notified" and (e["details"] or {}).get("channel") == channel
                    for e in events.get(r.request_id, []))]
    except Exception as exc:  # never fail the export over a notification
        log.error("notify %s: cannot read the requests: %s", channel, _error_line(exc))
        return out
    for r in todo:
        error = ""
        tries = 0
        status: Any = None
        try:
            body = message(policy, r, link=link)  # once: a link is issued (and audited) once, not per attempt
        except Exception as exc:
            body, error = {}, f"building the message: {_error_line(exc)}"
        for tries in range(1, attempts + 1 if body else 1):
            try:
                status = send(body)
                error = ""
                break
            except Exception as exc:
                error = _error_line(exc)
                status = exc.code if isinstance(exc, urllib.error.HTTPError) else None
                if tries < attempts:
                    time.sleep(backoff * 2 ** (tries - 1))
        out[r.request_id] = not error
        event = audit.AuditEvent("notified" if not error else "notify_failed", request_id=r.request_id, details={
            "channel": channel, "attempts": tries, **({"status": status} if isinstance(status, int) else {}),
            **({"error": error} if error else {}), "at": dt.datetime.now(dt.UTC).isoformat()})
        try:
            audit.append(policy, [event])
        except Exception as exc:
            log.error("notify %s: request %s: cannot record the outcome: %s", channel, r.request_id,
                      _error_line(exc))
        if error:
            log.warning("notify %s: request %s not notified after %d attempt(s): %s", channel, r.request_id,
                        tries, error)
    return out


def packages_ready(policy: Policy, request_ids: Sequence[str], *, backoff: float = 1.0) -> dict[str, bool]:
    """The policy's webhook notification for these completed exports ({} when no webhook is configured)."""
    cfg = policy.delivery.notify
    if cfg is None or not request_ids:
        return {}
    return deliver(policy, request_ids, lambda body: post_json(cfg.webhook, body, cfg.timeout_seconds),
                   channel=WEBHOOK, attempts=cfg.attempts, link=cfg.link, backoff=backoff)
