"""Command-line options several ``dsr`` commands share, declared once (light at import: ``dsr --help`` loads it)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_json"]


def add_json(parser: Any, what: str, *, group: Any = None) -> None:
    """``--json``: ``what`` as JSON on stdout only (messages and progress stay on stderr, exit codes unchanged)."""
    (group or parser).add_argument("--json", action="store_true",
                                   help=f"print {what} as JSON on stdout only (same exit code)")
