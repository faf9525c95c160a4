"""The completeness guardrail of ``dsr check`` and ``dsr run``: every personal table is covered or exempt.

One rule in one place: ``dsr check`` lists the uncovered tables and exits 1; a run refuses to claim anything
while one exists (``require_covered``), so no erasure completes while a personal table nobody looked at
still holds the person.
"""

from __future__ import annotations

from dsr.core.policy import Policy, read_schema
from dsr.delta import storage
from dsr.errors import CoverageError, PolicyError

__all__ = ["describe", "require_covered", "uncovered_tables"]


def uncovered_tables(policy: Policy) -> list[tuple[str, list[str]]]:
    """Delta tables under the lake with a subject-like column that are neither covered nor exempt.

    Subject-like: a column named like any policy table's subject column, or listed in ``subject_columns``.
    Returns (path relative to the lake, matching columns), sorted by path.
    """
    names = {t.subject.lower() for t in policy.tables} | {c.lower() for c in policy.subject_columns}
    covered = {t.uri for t in policy.tables}
    exempt = {storage.join(policy.lake, e.path) for e in policy.exempt}
    out: list[tuple[str, list[str]]] = []
    for rel in storage.list_delta_tables(policy.lake, skip=(policy.control,)):
        uri = storage.join(policy.lake, rel)
        if uri in covered or uri in exempt:
            continue
        try:
            schema = read_schema(uri)
        except PolicyError:  # a table nobody can read may hold anyone: it must be covered or exempt
            out.append((rel, ["(unreadable Delta log)"]))
            continue
        if schema is None:
            continue
        hits = [n for n in schema.names if n.lower() in names]
        if hits:
            out.append((rel, hits))
    return sorted(out)


def describe(missing: list[tuple[str, list[str]]]) -> str:
    """``path (subject-like column: a, b)``, comma-separated."""
    return ", ".join(f"{path} (subject-like column: {', '.join(cols)})" for path, cols in missing)


def require_covered(policy: Policy) -> None:
    """Raise CoverageError (exit 1) naming every uncovered personal table; nothing is claimed or written."""
    missing = uncovered_tables(policy)
    if missing:
        raise CoverageError(
            f"{len(missing)} personal table(s) neither in 'tables' nor 'exempt': {describe(missing)}; "
            "nothing claimed: add each to 'tables' (with an erase strategy) or to 'exempt' (with a reason), "
            "see dsr check"
        )
