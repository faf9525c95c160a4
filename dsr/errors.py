"""The narrow exceptions of dsr. Messages never carry subject IDs: name request ids, tables and columns.

:func:`scrub` is the one scrubber for texts dsr did not write itself (a reader's or writer's error, a refusal
recorded with a request): it replaces every subject id that stands as a whole token by ``<subject>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "SUBJECT",
    "AuditChainError",
    "ConflictError",
    "CoverageError",
    "DsrError",
    "InputError",
    "PolicyError",
    "StepError",
    "StoreError",
    "TableError",
    "VerificationError",
    "scrub",
]

SUBJECT = "<subject>"
"""What a scrubbed subject id is replaced by."""


def scrub(text: str, ids: Iterable[object]) -> str:
    """``text`` with every one of ``ids`` that stands as a whole token replaced by ``<subject>``.

    A token is a run of letters, digits, ``_`` and ``-``, with ``.`` inside it (``v1.2``, ``part-00002.c000``):
    the erased id ``2`` goes in ``'2'``, ``user_id=2/`` or ``[2, 3]``, but not in ``icebergCompatV2``,
    ``pytest-2`` or ``1.25``, which are other values. Longer ids first, so ``u10`` is never left as
    ``<subject>0``; ``None`` and empty ids are ignored.
    """
    values = sorted({str(i) for i in ids if i is not None and str(i) != ""}, key=len, reverse=True)
    if not values:
        return text
    pattern = re.compile(r"(?<![\w-])(?<!\w\.)(?:" + "|".join(map(re.escape, values)) + r")(?![\w-])(?!\.\w)")
    return pattern.sub(SUBJECT, text)


class DsrError(Exception):
    """Base of every error dsr raises on purpose."""

    exit_code = 1


class InputError(DsrError):
    """Bad usage or bad input: the CLI prints one line and exits 2, nothing written."""

    exit_code = 2


class PolicyError(InputError):
    """The policy file is invalid, or does not match the lake."""


class ConflictError(DsrError):
    """A Delta commit lost an optimistic-concurrency race too many times."""


class VerificationError(DsrError):
    """A verification (GE suite, reconcile, hash chain) failed: exit 1."""


class AuditChainError(VerificationError):
    """The audit log's hash chain is broken: a command that writes refuses before writing anything. Exit 1."""


class CoverageError(VerificationError):
    """A Delta table with a subject-like column is neither covered nor exempt: a run claims nothing. Exit 1."""


class StepError(DsrError):
    """A step of a run failed for a reason outside dsr (I/O, engine); its text has subject ids scrubbed."""


class TableError(DsrError):
    """A data table cannot be read, or cannot be written safely by the engine (an unsupported Delta feature, an
    unreadable log): names the table and the cause, never a subject id. Exit 1."""


class StoreError(InputError):
    """dsr's own control or audit table cannot be read as dsr wrote it (a truncated log, a missing file, a
    changed schema): one line naming the table, exit 2, nothing written."""
