"""The operations commands, declared and dispatched here to keep ``dsr/cli/main.py`` small: ``dsr status``
(the backlog, exit 1 when anything is overdue) and ``dsr report`` (HTML pages). Both read the control table and
the audit log only. Light at import: ``dsr --help`` loads it."""

from __future__ import annotations

import argparse
from typing import Any

from dsr.cli.options import add_json

__all__ = ["COMMANDS", "add_commands", "cli_ops"]

COMMANDS = ("status", "report")


def add_commands(sub: Any) -> None:
    """Add the subcommands to ``dsr``'s subparsers."""
    sts = sub.add_parser("status", help="backlog, overdue and failed requests, purges due, tables' last runs; "
                                        "exit 1 if anything is overdue or failed for good")
    fmt = sts.add_mutually_exclusive_group()
    add_json(sts, "the backlog, purges and tables", group=fmt)
    fmt.add_argument("--prometheus", action="store_true", help="Prometheus text format (node-exporter textfile)")
    rpt = sub.add_parser("report", help="write an HTML page per run: tables, strategies, rows, versions, GE, residue")
    rpt.add_argument("--out", metavar="DIR", default="dsr-report", help="where to write (default ./dsr-report)")


def cli_ops(args: argparse.Namespace, policy: Any) -> int:
    if args.command == "report":
        from dsr.cli.report import cli_report

        return cli_report(policy, args.out)
    from dsr.cli.status import cli_status

    return cli_status(policy, as_json=args.json, prometheus=args.prometheus)
