"""The ``dsr`` command. Contract: ../shared/DESIGN.md. Heavy imports live inside the handlers.

Exit codes: 0 success; 1 a check or verification failed; 2 bad usage or bad input (one line on stderr,
nothing written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from dsr.cli import ops
from dsr.cli.options import add_json

__all__ = ["main"]

_EPILOG = """\
exit codes: 0 success, 1 a check or verification failed, 2 bad usage or bad input (nothing written).
policy: --policy FILE, else $DSR_POLICY, else ./dsr.yml.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    """One declaration of the whole command line (the ``dsr`` contract), kept together on purpose."""
    p = _Parser(
        prog="dsr",
        description="Data-subject requests (GDPR access/portability and erasure) on a Delta Lake.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--policy", metavar="FILE", help="policy YAML (default: $DSR_POLICY, else ./dsr.yml)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    chk = sub.add_parser(
        "check", help="validate the policy; fail (exit 1) if a personal table is neither covered nor exempt, or if "
                      "a table uses a Delta feature the reader or the engine cannot handle"
    )
    chk.add_argument("--engine", choices=("delta-rs", "spark"), default=None,
                     help="the engine to check the tables' Delta features against (default: $DSR_ENGINE, "
                          "else delta-rs)")
    chk.add_argument("--remote", metavar="sc://HOST:PORT",
                     help="Spark Connect endpoint (implies --engine spark; its server kind decides what it handles)")
    add_json(chk, "the check's result (per table, every unsupported feature)")

    req = sub.add_parser("request", help="file a request: erase|export SUBJECT|--id KIND=VALUE, or import FILE.csv")
    rsub = req.add_subparsers(dest="kind", metavar="erase|export|import", parser_class=_Parser)
    rsub.required = True
    for kind, text in (("erase", "erasure (GDPR Art. 17)"), ("export", "access/portability export (Art. 15/20)")):
        r = rsub.add_parser(kind, help=f"file an {text} request; prints the request id")
        r.add_argument("subject", metavar="SUBJECT", nargs="?",
                       help="the subject id (a policy with one identifier kind; else use --id)")
        r.add_argument("--id", dest="ids", metavar="KIND=VALUE", action="append", default=[],
                       help="an identifier of the person, of a kind the policy declares (repeatable: the first "
                            "names the request; identity resolution adds those the link tables tie to it)")
        r.add_argument("--ticket", metavar="T", help="your ticket or case reference")
        r.add_argument("--by", metavar="WHO", help="who files the request")
        if kind == "export":
            r.add_argument("--format", choices=("json", "csv"), help="the package's data files (default json)")
            r.add_argument("--recipient-key", metavar="FILE.pem",
                           help="encrypt the package to this X25519 or RSA public key (PEM)")
    imp = rsub.add_parser(
        "import", help="file every request of a CSV (header kind,subject_id[,id_kind,ticket,requested_by,format]); "
                       "all or nothing"
    )
    imp.add_argument("file", metavar="FILE.csv")

    lst = sub.add_parser("requests", help="list requests (overdue ones are marked)")
    lst.add_argument("--status", choices=("pending", "running", "completed", "failed"))
    add_json(lst, "the requests")

    run = sub.add_parser("run", help="process every pending request once: export, erase, verify, complete")
    run.add_argument("--engine", choices=("delta-rs", "spark"), default=None,
                     help="delta-rs (default, in-process) or spark (classic with delta-spark, or Spark Connect)")
    run.add_argument("--remote", metavar="sc://HOST:PORT", help="Spark Connect endpoint (implies --engine spark)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr (warnings and errors only)")
    add_json(run, "the run report")
    run.add_argument("--run-id", metavar="ID",
                     help="the batch id (default: generated; letters, digits, _ . -); the same id again resumes "
                          "that batch: its claimed requests and finished steps")

    ver = sub.add_parser("verify", help="re-run the Great Expectations suites for all erased subjects")
    ver.add_argument("--engine", choices=("delta-rs", "spark"), default=None,
                     help="where to read the tables: delta-rs in this process (default), or spark on the cluster "
                          "(checked against the files delta-rs lists)")
    ver.add_argument("--remote", metavar="sc://HOST:PORT", help="Spark Connect server to read on (implies spark)")
    add_json(ver, "each table's verification")

    rec = sub.add_parser("receipt", help="what was done for a request (tables, strategy, rows, versions, GE "
                                         "result), or by a sweep (SWEEP_ID)")
    rec.add_argument("request_id", metavar="REQUEST_ID|SWEEP_ID")
    add_json(rec, "the receipt")

    res = sub.add_parser(
        "residue", help="search every file of the covered tables, the control and audit tables and the exports for "
                        "what is left of erased subjects; exit 1 if anything is found (counts only, never values)"
    )
    res.add_argument("request_ids", metavar="REQUEST_ID", nargs="*",
                     help="erasure requests to scan (default: every completed erasure)")
    res.add_argument("--engine", choices=("delta-rs", "spark"), default=None,
                     help="who reads the tables' data files: delta-rs (default, in this process) or spark (the "
                          "cluster; only counts come back); the logs, names and dsr's own tables are read here; "
                          "spark also resolves tables the policy names in the Spark catalog (table:)")
    res.add_argument("--remote", metavar="sc://HOST:PORT", help="Spark Connect endpoint (implies --engine spark)")
    add_json(res, "the counts per request, table and place")

    prg = sub.add_parser(
        "purge", help="physically remove what completed erasures left (old files, log entries, deletion-vector "
                      "rows) once purge_after_hours has passed; versions before the erase become unreadable",
        description="Physically remove what completed erasures left once purge_after_hours has passed, then "
                    "forget the purged people in the control table. It holds the purge lease: it waits up to "
                    "lease_wait_seconds for a running dsr run or sweep, then exits 1 naming it. Killed at any "
                    "point, every table stays readable: run it again to finish the job (README: Crash safety).",
    )
    prg.add_argument("--dry-run", action="store_true", help="list what would be removed, write nothing")
    prg.add_argument("--engine", choices=("delta-rs", "spark"), default=None,
                     help="who rewrites files carrying deletion vectors: delta-rs (default), or spark, whose "
                          "REORG TABLE ... APPLY (PURGE) is used on delta-spark and Databricks (Sail: delta-rs); "
                          "VACUUM and the log cleanup are delta-rs on both")
    prg.add_argument("--remote", metavar="sc://HOST:PORT", help="Spark Connect endpoint (implies --engine spark)")
    prg.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr (warnings and errors only)")
    add_json(prg, "the purge report")

    swp = sub.add_parser(
        "sweep", help="apply every past erasure again (late, replayed or restored rows; tables added later): "
                      "incremental by default, from each table's last sweep; exit 1 if a table fails"
    )
    swp.add_argument("--table", dest="tables", metavar="NAME", action="append", default=[],
                     help="a table of the policy (repeatable; default: every delete/anonymise table)")
    since = swp.add_mutually_exclusive_group()
    since.add_argument("--since-version", type=int, metavar="V",
                       help="read the files added after Delta version V (instead of since the last sweep)")
    since.add_argument("--since", metavar="TIMESTAMP",
                       help="read the files added after the version current at this time (ISO, UTC)")
    since.add_argument("--full", action="store_true", help="read every live file")
    swp.add_argument("--dry-run", action="store_true", help="count what would change (rows, files), write nothing")
    swp.add_argument("--engine", choices=("delta-rs", "spark"), default=None,
                     help="who searches (the digest match runs in its SQL) and rewrites: delta-rs (default, "
                          "in-process) or spark")
    swp.add_argument("--remote", metavar="sc://HOST:PORT", help="Spark Connect endpoint (implies --engine spark)")
    swp.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr (warnings and errors only)")
    add_json(swp, "the sweep report")

    ops.add_commands(sub)  # status, report

    aud = sub.add_parser("audit", help="audit log: 'audit verify' recomputes the hash chain")
    asub = aud.add_subparsers(dest="audit_command", metavar="verify", parser_class=_Parser)
    asub.required = True
    asub.add_parser("verify", help="recompute the hash chain; exit 1 naming the first bad event")

    lnk = sub.add_parser("export-link", help="print a presigned HTTPS link to a completed export's package (S3 "
                                             "exports only); the audit log records to whom and until when")
    lnk.add_argument("request_id", metavar="REQUEST_ID")
    lnk.add_argument("--ttl", metavar="DURATION",
                     help="how long the link works: a number and s, m, h or d (e.g. 24h, 3d), at most 7d "
                          "(default: what is left of the package's life, at most 7 days)")
    lnk.add_argument("--for", dest="issued_for", metavar="WHO", help="who receives the link (recorded)")
    add_json(lnk, "the link, its TTL and when it expires")

    demo = sub.add_parser("demo", help="demo lake + policy + requests, then the Airflow DAG end to end")
    demo.add_argument("--dir", metavar="DIR", default="demo", help="where to build the demo (default ./demo)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from dsr.errors import DsrError

    try:
        if args.command == "demo":  # builds lakes and runs Airflow in other processes
            return int(_dispatch(args) or 0)
        from dsr.delta import opened

        with opened.shared():  # one command: each table opened once, then brought up to date
            return int(_dispatch(args) or 0)
    except DsrError as exc:
        text = " ".join(str(exc).splitlines())  # one line, whatever a path or value in it holds
        print(f"dsr: error: {text}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dsr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dsr requests | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _policy(args: argparse.Namespace, *, lake: bool = True, tables: bool | None = None) -> Any:
    """The policy. ``lake=True`` (check, run, verify: commands that process data) also checks the pseudonym
    key when a mask pseudonymises and the tables' Delta metadata, before anything is read or written;
    ``lake=False`` (filing requests, listing them, receipts, the audit chain) needs neither the key nor the
    tables. ``tables`` (default: ``lake``): the command reads the tables, so tables named in the Spark catalog
    (``table:``) are resolved first through the command's Spark session, or refused (exit 2) without one."""
    from dsr.core.policy import check_against_lake, load_policy, resolve_policy_path
    from dsr.core.policy_catalog import resolve_for

    policy = load_policy(resolve_policy_path(args.policy))
    if lake and policy.needs_key:
        policy.pseudonym_key()  # PolicyError (exit 2) naming the variable when unset or too short
    if lake if tables is None else tables:
        policy = resolve_for(policy, engine=getattr(args, "engine", None), remote=getattr(args, "remote", None),
                             command=f"dsr {args.command}")
    if lake:
        check_against_lake(policy)
    return policy


def _dispatch(args: argparse.Namespace) -> int:
    """One branch per command, each importing its handler when it runs (``dsr --help`` loads nothing heavy)."""
    cmd = args.command
    if cmd == "demo":
        from dsr.cli.demo import run_demo

        return run_demo(args.dir)
    if cmd == "check":
        from dsr.cli.check import cli_check

        return cli_check(_policy(args), engine=args.engine, remote=args.remote, as_json=args.json)
    if cmd == "request":
        from dsr.cli.filing import cli_request

        return cli_request(args, lambda: _policy(args, lake=False))
    if cmd == "export-link":
        from dsr.cli.exportlink import cli_export_link

        return cli_export_link(args, lambda: _policy(args, lake=False))
    if cmd == "requests":
        return _requests(args)
    if cmd == "audit":
        return _audit_verify(args)
    if cmd == "receipt":
        return _receipt(args)
    if cmd in ops.COMMANDS:
        return ops.cli_ops(args, _policy(args, lake=False))
    if cmd == "sweep":
        from dsr.cli.sweep import cli_sweep

        return cli_sweep(_policy(args), tables=args.tables, since_version=args.since_version, since=args.since,
                         full=args.full, dry_run=args.dry_run, as_json=args.json, engine=args.engine,
                         remote=args.remote, quiet=args.quiet)
    if cmd == "purge":
        from dsr.cli.purge import cli_purge
        from dsr.core.policy import check_against_lake

        policy = _policy(args, lake=False, tables=True)
        check_against_lake(policy, key=False)  # maintenance computes no pseudonym: no key needed
        return cli_purge(policy, dry_run=args.dry_run, as_json=args.json, engine=args.engine, remote=args.remote,
                         quiet=args.quiet)
    if cmd == "residue":
        from dsr.cli.residue import cli_residue

        return cli_residue(_policy(args, lake=False, tables=True), args.request_ids, as_json=args.json,
                           engine=args.engine, remote=args.remote)
    if cmd == "run":
        from dsr.cli.runner import cli_run
        from dsr.core.requests import check_run_id

        run_id = check_run_id(args.run_id) if args.run_id is not None else None
        return cli_run(_policy(args), engine=args.engine, remote=args.remote, run_id=run_id, as_json=args.json,
                       quiet=args.quiet)
    if cmd == "verify":
        from dsr.cli.runner import cli_verify

        return cli_verify(_policy(args), engine=args.engine, remote=args.remote, as_json=args.json)
    raise AssertionError(cmd)


def _receipt(args: argparse.Namespace) -> int:
    """A request's receipt, or a sweep's (``swp_`` ids)."""
    from dsr.cli.receipt import print_receipt

    if args.request_id.startswith("swp_"):
        from dsr.cli.sweep import print_sweep_receipt
        from dsr.steps.sweep_state import check_sweep_id

        return print_sweep_receipt(_policy(args, lake=False), check_sweep_id(args.request_id), as_json=args.json)
    return print_receipt(_policy(args, lake=False), args.request_id, as_json=args.json)


def _requests(args: argparse.Namespace) -> int:
    from dsr.cli.listing import print_requests

    return print_requests(_policy(args, lake=False), status=args.status, as_json=args.json)


def _audit_verify(args: argparse.Namespace) -> int:
    from dsr.core import audit

    policy = _policy(args, lake=False)
    n, brk = audit.verify_chain(policy)
    if brk is not None:
        print(f"audit chain BROKEN at event seq {brk.seq} (event_id {brk.event_id}): {brk.why}; "
              f"{n} event(s) before it are intact")
        return 1
    print(f"audit chain OK: {n} event(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
