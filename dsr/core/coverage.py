"""The completeness guardrail of ``dsr check`` and ``dsr run``: every personal table is covered or exempt.

One rule in one place: ``dsr check`` lists the uncovered tables and exits 1; a run refuses to claim anything
while one exists (``require_covered``), so no erasure completes while a personal table nobody looked at
still holds the person.

It searches the lake, and below the location of every table the policy names in the Spark catalog that lies
outside the lake (dsr writes there too): a Delta table nested in such a table's folder must be covered as well.
The folders beside such a location belong to the catalog and are not searched.
"""

from __future__ import annotations

from collections.abc import Iterator

from dsr.core.policy import Policy, read_schema
from dsr.core.policy_catalog import outside_lake
from dsr.core.policy_paths import nested
from dsr.delta import storage
from dsr.errors import CoverageError, PolicyError

__all__ = ["describe", "require_covered", "uncovered_tables"]


def uncovered_tables(policy: Policy) -> list[tuple[str, list[str]]]:
    """Delta tables under the lake (and below the catalog tables' locations outside it) with a subject-like
    column that are neither covered nor exempt.

    Subject-like: a column named like any policy table's subject column (any of its ``subjects``), like an
    identifier kind, like a link table's column, or listed in ``subject_columns``. A link table of ``identity``
    holds people's identifiers too: it is no exception.
    Returns (path relative to the lake, or the full location outside it; matching columns), sorted by path.
    """
    names = {c.lower() for t in policy.tables for c in t.subject_names} | {c.lower() for c in policy.subject_columns}
    names |= {k.name.lower() for k in policy.identifiers} | {c.lower() for link in policy.identity
                                                            for c, _ in link.columns}
    covered = {t.uri for t in policy.tables if t.resolved}
    located = [t.uri for t in policy.tables if t.catalog is not None and t.resolved]  # as the catalog wrote them
    exempt = {storage.join(policy.lake, e.path) for e in policy.exempt}
    out: list[tuple[str, list[str]]] = []
    for shown, uri in _candidates(policy):
        if uri in covered or uri in exempt or any(nested(uri, c) and nested(c, uri) for c in located):
            continue
        try:
            schema = read_schema(uri)
        except PolicyError:  # a table nobody can read may hold anyone: it must be covered or exempt
            out.append((shown, ["(unreadable Delta log)"]))
            continue
        if schema is None:
            continue
        hits = [n for n in schema.names if n.lower() in names]
        if hits:
            out.append((shown, hits))
    return sorted(out)


def _candidates(policy: Policy) -> Iterator[tuple[str, str]]:
    """(how to show it, location) of every Delta table under the lake, then of every one nested below the
    location of a catalog table outside the lake (its log and partition folders are not searched)."""
    for rel in storage.list_delta_tables(policy.lake, skip=(policy.control,)):
        yield rel, storage.join(policy.lake, rel)
    for t in outside_lake(policy):
        for uri in _nested_below(t.uri):
            yield uri, uri


def _nested_below(table: str) -> Iterator[str]:
    """Delta tables in the folders of the table at ``table`` (not its log, nor its ``k=v`` partition folders)."""
    from pyarrow import fs

    filesys, base = storage.filesystem(table)
    for child in filesys.get_file_info(fs.FileSelector(base, allow_not_found=True)):
        name = child.base_name
        if child.type != fs.FileType.Directory or name.startswith((".", "_")) or "=" in name:
            continue
        uri = storage.join(table, name)
        if storage.delta_table_exists(uri):
            yield uri
        else:
            yield from (storage.join(uri, rel) for rel in storage.list_delta_tables(uri))


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
