"""``dsr request erase|export SUBJECT`` and ``dsr request import FILE.csv``: filing requests."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from dsr.core import control
from dsr.core.delivery import recipient_pem
from dsr.core.policy import Policy
from dsr.errors import InputError

__all__ = ["cli_request"]


def _recipient_key(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 10)
    except OSError as exc:
        raise InputError(f"--recipient-key {path}: cannot read ({exc.strerror})") from None
    return recipient_pem(data, f"--recipient-key {path}")


def cli_request(args: argparse.Namespace, load_policy: Callable[[], Policy]) -> int:
    """File one request (prints its id) or a CSV of them (prints each id and whether it was added). Every
    input is checked before anything is written."""
    if args.kind == "import":
        policy = load_policy()
        results = control.import_csv(policy, args.file)
        added = sum(1 for _, created in results if created)
        for rid, created in results:
            print(f"{rid}\t{'added' if created else 'duplicate of an open request'}")
        print(f"imported {added} new request(s), {len(results) - added} duplicate(s)", file=sys.stderr)
        return 0
    if args.subject is None and not args.ids:
        raise InputError(f"dsr request {args.kind}: name the person: SUBJECT, or --id KIND=VALUE")
    key = _recipient_key(getattr(args, "recipient_key", None))
    policy = load_policy()
    rid, created = control.submit(policy, args.kind, args.subject, ids=args.ids, ticket=args.ticket,
                                  requested_by=args.by, export_format=getattr(args, "format", None),
                                  recipient_key=key)
    print(rid)
    if not created:
        print(f"dsr: an open {args.kind} request for this subject exists already: {rid}", file=sys.stderr)
    return 0
