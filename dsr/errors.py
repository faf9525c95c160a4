"""The narrow exceptions of dsr. Messages never carry subject IDs: name request ids, tables and columns."""

from __future__ import annotations

__all__ = [
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
]


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
