"""``dsr export-link REQUEST_ID [--ttl DURATION] [--for WHO] [--json]``: a presigned link to an export package."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from dsr.core.policy import Policy
from dsr.core.requests import check_request_id

__all__ = ["cli_export_link"]


def cli_export_link(args: argparse.Namespace, load_policy: Callable[[], Policy]) -> int:
    """Print the link (or JSON with its expiry); bad input (a local exports folder, a TTL over 7 days, an
    unfinished or expired export) is one line and exit 2, with nothing recorded."""
    from dsr.steps.links import issue_link, parse_ttl

    rid = check_request_id(args.request_id)
    ttl = parse_ttl(args.ttl) if args.ttl is not None else None
    link = issue_link(load_policy(), rid, ttl=ttl, issued_for=args.issued_for)
    if args.json:
        print(json.dumps({"request_id": link.request_id, "url": link.url, "ttl_seconds": link.ttl_seconds,
                          "expires_at": link.expires_at.isoformat(), "for": link.issued_for}, indent=2))
    else:
        print(link.url)
    return 0
