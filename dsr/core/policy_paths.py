"""Where a policy may point: names that are identifiers, and table, exempt and control paths that stay under the
lake (local paths resolved, symbolic links followed; S3 URIs compared bucket and prefix segment by segment)."""

from __future__ import annotations

import os
import re

from dsr.delta import storage

__all__ = ["MAX_NAME_LEN", "NAME_PATTERN", "PATH_CONTROL", "clean_path", "location_problem", "name_ok", "nested",
           "remote_key", "segments", "table_uri"]

# A table name (and each segment of 'control'): letters, digits, '_', '-', '.', not starting with '.' or '-'
# (so never '.' or '..'), no separator; it names files under the exports root.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


MAX_NAME_LEN = 128


PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def name_ok(name: str) -> bool:
    return len(name) <= MAX_NAME_LEN and NAME_PATTERN.fullmatch(name) is not None


def segments(path: str) -> list[str]:
    """The '/'-separated segments of a path or URI rest, without empty and '.' segments."""
    return [s for s in path.split("/") if s not in ("", ".")]


def remote_key(uri: str) -> tuple[str, list[str]]:
    """(scheme, segments) of a URI for comparing locations: s3a is s3, '//' and '.' segments collapse."""
    scheme, _, rest = uri.partition("://")
    scheme = scheme.lower()
    return ("s3" if scheme == "s3a" else scheme), segments(rest)


def location_problem(path: str, lake: str) -> str | None:
    """Why a table or exempt path does not lie strictly below the lake root, or None when it does.

    Relative paths are relative to the lake; absolute paths and URIs must lie below it. Local paths are
    resolved (symbolic links followed); URIs are compared textually after collapsing '//' and '.' segments,
    and any '..' segment in them is refused.
    """
    if PATH_CONTROL.search(path):
        return "contains a control character"
    relative = "://" not in path and not os.path.isabs(path)
    if storage.is_remote(lake) or "://" in path:
        if not storage.is_remote(lake) or (not relative and not storage.is_remote(path)):
            return "is outside the lake"
        segs = path.split("/") if relative else path.partition("://")[2].split("/")
        if ".." in segs:
            return "has a '..' segment"
        if relative:
            if not segments(path):
                return "is the lake root itself, not a folder below it"
            return None
        scheme, parts = remote_key(path)
        lake_scheme, lake_parts = remote_key(lake)
        if scheme != lake_scheme or parts[: len(lake_parts)] != lake_parts:
            return "is outside the lake"
        if len(parts) == len(lake_parts):
            return "is the lake root itself, not a folder below it"
        return None
    real_lake = os.path.realpath(lake)
    real = os.path.realpath(os.path.join(lake, path))
    if real == real_lake:
        return "is the lake root itself, not a folder below it"
    if os.path.commonpath([real, real_lake]) != real_lake:
        if not relative:
            return "is outside the lake"
        if ".." in path.split("/"):
            return "leaves the lake through '..'"
        return "resolves outside the lake (through a symbolic link)"
    return None


def table_uri(lake: str, path: str) -> str:
    """Where a (checked) table path points: local paths joined and normalised; on object storage the URI as
    checked by location_problem, without empty or '.' segments."""
    if storage.is_remote(path):
        scheme, _, rest = path.partition("://")
        return f"{scheme}://{'/'.join(segments(rest))}"
    if storage.is_remote(lake):
        return lake.rstrip("/") + "/" + "/".join(segments(path))
    return storage.join(lake, path)


def nested(a: str, b: str) -> bool:
    """Whether location a is b or lies below it (local paths resolved; URIs compared by segments)."""
    if storage.is_remote(a) != storage.is_remote(b):
        return False
    if storage.is_remote(a):
        (sa, pa), (sb, pb) = remote_key(a), remote_key(b)
        return sa == sb and pa[: len(pb)] == pb
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    return os.path.commonpath([ra, rb]) == rb


def clean_path(path: str) -> str:
    """A table path as written, without stray slashes; absolute and remote paths stay absolute."""
    if storage.is_remote(path) or os.path.isabs(path):
        return path.rstrip("/") or path
    return path.strip("/")

