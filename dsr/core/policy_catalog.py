"""Policy tables named in the Spark catalog (``table: schema.table``): their locations, resolved through a Spark
session before a command reads or writes anything.

``resolve_for`` is what every command that reads tables calls right after loading the policy: a policy without
``table:`` entries is returned as it is (no session is opened); with them, the command needs the Spark engine
(``--engine spark``, ``--remote``, or ``$DSR_ENGINE``/``$SPARK_REMOTE``), and each name is resolved through that
session's catalog (:func:`dsr.engines.spark_catalog.locate`); otherwise one line, exit 2, nothing written.

A location may lie outside ``lake``: dsr then reads and writes there too (erase commits, purges), and nowhere
else. It must be a local folder or ``s3://`` (what the access layer reads), must not overlap dsr's control
folder, and must not be another table's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from dsr.core.policy_model import Policy, TableSpec
from dsr.core.policy_paths import nested, table_uri
from dsr.delta import storage
from dsr.errors import InputError, PolicyError

__all__ = ["location_uri", "outside_lake", "refuse_unresolved", "resolve", "resolve_for"]

_S3 = ("s3://", "s3a://")


def location_uri(location: str) -> str:
    """The catalog's location as dsr names storage: ``file:`` URIs and absolute paths as local paths, ``s3a://``
    and ``s3://`` as they are; ValueError for anything else (``dbfs:/``, ``abfss://``, a relative path)."""
    if location.startswith("file:"):
        local = storage.local_path(location)  # file:///abs/path, and Hadoop's file:/abs/path
        if local is None:
            raise ValueError("a file: URI that names no local absolute path")
        return os.path.abspath(local)
    if location.startswith(_S3):
        scheme, _, rest = location.partition("://")
        if not rest.split("/", 1)[0] or ".." in rest.split("/"):
            raise ValueError("an s3 URI without a bucket, or with a '..' segment")
        return table_uri("", location)
    if storage.is_remote(location) or ":" in location.split("/", 1)[0]:
        scheme = location.split(":", 1)[0]
        raise ValueError(f"storage {scheme + ':'!r} that dsr cannot read (a local folder or s3:// only)")
    if not os.path.isabs(location):
        raise ValueError("a relative path")
    return os.path.abspath(location)


def resolve(policy: Policy, locate: Callable[[str], str]) -> Policy:
    """The policy with every ``table:`` entry's ``path`` and ``uri`` set to the location ``locate(name)`` gives.

    PolicyError (one line) for a location dsr cannot read, one that overlaps the control folder, or one another
    table of the policy already has."""
    control = policy.control_uri
    tables: list[TableSpec] = []
    for t in policy.tables:
        if t.resolved or t.catalog is None:
            tables.append(t)
            continue
        label = f"policy {policy.source}: table {t.name!r} (catalog table {t.catalog})"
        location = locate(t.catalog)
        try:
            uri = location_uri(location)
        except ValueError as exc:
            raise PolicyError(f"{label}: its location {location!r} is {exc}") from None
        if nested(uri, control) or nested(control, uri):
            raise PolicyError(f"{label}: its location {uri} overlaps the control folder {policy.control!r}")
        tables.append(replace(t, path=uri, uri=uri))
    for i, t in enumerate(tables):  # a catalog table against every table before it (paths are distinct already)
        for other in tables[:i]:
            if (t.catalog or other.catalog) and nested(t.uri, other.uri) and nested(other.uri, t.uri):
                raise PolicyError(f"policy {policy.source}: tables {other.name!r} and {t.name!r} have the same "
                                  f"location {t.uri}")
    return replace(policy, tables=tuple(tables))


def outside_lake(policy: Policy) -> list[TableSpec]:
    """The resolved catalog tables whose location is not below ``lake``: dsr writes there too."""
    return [t for t in policy.tables if t.catalog is not None and t.resolved and not nested(t.uri, policy.lake)]


def refuse_unresolved(policy: Policy, command: str) -> None:
    """PolicyError (exit 2) naming the first ``table:`` entry not resolved: ``command`` needs the Spark engine."""
    if policy.unresolved:
        t = policy.unresolved[0]
        more = f" (and {len(policy.unresolved) - 1} more)" if len(policy.unresolved) > 1 else ""
        raise PolicyError(
            f"policy {policy.source}: table {t.name!r} is named in the Spark catalog ({t.catalog}){more}: {command} "
            "cannot resolve the name to a location without a Spark session; use --engine spark (with --remote "
            "sc://HOST:PORT for Spark Connect)"
        )


def resolve_for(policy: Policy, *, engine: str | None, remote: str | None, command: str) -> Policy:
    """Resolve the policy's ``table:`` entries through the Spark session the command's ``engine``/``remote``
    (else $DSR_ENGINE, $SPARK_REMOTE) names; refused (exit 2) on any other engine. Nothing to resolve: the
    policy as it is, no session opened."""
    if not policy.unresolved:
        return policy
    from dsr.engines import engine_name
    from dsr.engines.spark_catalog import catalog_session, locate

    if engine_name(engine, remote) != "spark":
        refuse_unresolved(policy, command)
    address = remote or os.environ.get("SPARK_REMOTE") or None
    with catalog_session(address) as spark:
        def where(name: str) -> str:
            try:
                return locate(spark, name).location
            except InputError as exc:
                raise PolicyError(f"policy {policy.source}: {exc}") from None

        return resolve(policy, where)
