"""Command-line options several ``dsr`` commands share, declared once (light at import: ``dsr --help`` loads it)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_json", "check_engine_args"]


def add_json(parser: Any, what: str, *, group: Any = None) -> None:
    """``--json``: ``what`` as JSON on stdout only (messages and progress stay on stderr, exit codes unchanged)."""
    (group or parser).add_argument("--json", action="store_true",
                                   help=f"print {what} as JSON on stdout only (same exit code)")


def check_engine_args(engine: str | None, remote: str | None) -> None:
    """InputError (exit 2) for an unknown engine, ``--remote`` beside delta-rs, or a Spark Connect address (the
    flag's, else $SPARK_REMOTE with ``--engine spark``) that is malformed or does not answer."""
    import os

    from dsr.engines import engine_name
    from dsr.engines.spark_session import check_reachable

    if engine_name(engine, remote) == "spark":
        address = remote or os.environ.get("SPARK_REMOTE")
        if address:
            check_reachable(address)
