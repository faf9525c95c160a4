"""One opened DeltaTable per table within a scope.

A run opens its control table, its audit log and each data table dozens of times, and opening replays the
Delta log (7-14 ms for a control table with a year of history, against about 1 ms to load the commits since).
Inside :func:`shared`, the first open of a table is kept and every later open brings it up to date with
``update_incremental`` (the new commits only, whoever wrote them), so it reads exactly what a new open would. A
version asked for by number is immutable: kept as opened. Outside the scope every open is a new one. The scope
is a context variable: a thread started elsewhere never sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["forget", "reuse", "shared"]

_SCOPE: ContextVar[dict[tuple[str, int | None], Any] | None] = ContextVar("dsr_opened_tables", default=None)


@contextmanager
def shared() -> Iterator[None]:
    """Within this block (nested blocks join the outer one), :func:`reuse` keeps one DeltaTable per table."""
    if _SCOPE.get() is not None:
        yield
        return
    token = _SCOPE.set({})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def reuse(uri: str, version: int | None, open_: Callable[[], Any]) -> Any:
    """The table at ``uri`` (at ``version``, or the latest when None): ``open_()`` outside a scope or on the
    first open in one; later, the kept table, brought up to date when it is the latest. A table that cannot be
    brought up to date is opened again (``open_``'s errors are its own)."""
    scope = _SCOPE.get()
    if scope is None:
        return open_()
    key = (uri, version)
    kept = scope.get(key)
    if kept is not None:
        if version is not None:
            return kept
        try:
            kept.update_incremental()
            return kept
        except Exception:  # e.g. its log is gone: a new open says what is wrong
            del scope[key]
    table = open_()
    if table is not None:
        scope[key] = table
    return table


def forget(uri: str) -> None:
    """Drop the kept tables of ``uri`` (it no longer exists)."""
    scope = _SCOPE.get()
    if scope is not None:
        for key in [k for k in scope if k[0] == uri]:
            del scope[key]
