"""Where things live: join lake paths, storage options for s3://, list Delta tables under a root.

Local paths and ``s3://bucket/prefix`` URIs are both accepted. For S3 the usual AWS environment variables
apply (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` for an
S3-compatible server such as MinIO or moto).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

__all__ = [
    "check_writable_folder",
    "delta_table_exists",
    "filesystem",
    "is_remote",
    "join",
    "list_delta_tables",
    "local_path",
    "storage_options",
    "walk",
]


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str | None:
    """The local path of a ``file:`` URI (``file:///a/b`` or ``file://localhost/a/b`` -> ``/a/b``), or None when
    it names another host or no absolute path."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    path = unquote(parts.path)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not path.startswith("/"):
        return None
    return path


def join(root: str, *parts: str) -> str:
    """Join a root (local dir or URI) with relative parts; absolute parts win."""
    out = root
    for part in parts:
        if is_remote(part) or os.path.isabs(part):
            out = part
        elif is_remote(out):
            out = out.rstrip("/") + "/" + part.strip("/")
        else:
            out = os.path.join(out, part)
    return out if is_remote(out) else os.path.abspath(out)


def storage_options(uri: str) -> dict[str, str] | None:
    """Options for deltalake (object_store) from the environment, for s3:// URIs; None for local paths."""
    if not uri.startswith(("s3://", "s3a://")):
        return None
    opts: dict[str, str] = {}
    env = os.environ
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        if env.get(key):
            opts[key] = env[key]
    opts.setdefault("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1"))
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    # S3 has conditional PUT (If-None-Match): safe concurrent commits without a lock table.
    opts.setdefault("conditional_put", env.get("DSR_S3_CONDITIONAL_PUT", "etag"))
    return opts


def filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow FileSystem and the path inside it, for listing and writing files."""
    from pyarrow import fs

    if not is_remote(uri):
        return fs.LocalFileSystem(), os.path.abspath(uri)
    scheme, _, rest = uri.partition("://")
    if scheme not in ("s3", "s3a"):
        raise ValueError(f"unsupported storage scheme {scheme!r}: use a local path or s3://bucket/prefix")
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    if env.get("AWS_ACCESS_KEY_ID"):
        kwargs["access_key"] = env["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = env.get("AWS_SECRET_ACCESS_KEY", "")
        if env.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = env["AWS_SESSION_TOKEN"]
    if endpoint:
        scheme_part, _, host = endpoint.partition("://")
        kwargs["endpoint_override"] = host
        kwargs["scheme"] = scheme_part
    return fs.S3FileSystem(**kwargs), rest.rstrip("/")


def walk(uri: str) -> Iterator[tuple[Any, str, str, int]]:
    """(filesystem, full path, path relative to ``uri``, size) of every file below ``uri`` (none when missing)."""
    from pyarrow import fs

    filesys, base = filesystem(uri)
    for info in filesys.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True)):
        if info.type == fs.FileType.File:
            yield filesys, info.path, info.path[len(base):].lstrip("/"), int(info.size or 0)


def check_writable_folder(path: str, label: str) -> None:
    """InputError (one line starting with ``label``) unless the local folder ``path`` is a writable folder, or
    can be made one: its nearest existing ancestor is a writable folder."""
    from dsr.errors import InputError

    path = os.path.abspath(path)
    if os.path.lexists(path):
        if not os.path.exists(path):
            raise InputError(f"{label}: is a broken symbolic link")
        if not os.path.isdir(path):
            raise InputError(f"{label}: exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"{label}: the directory is not writable")
        return
    ancestor = os.path.dirname(path)
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise InputError(f"{label}: cannot be created: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{label}: cannot be created: {ancestor} is not writable")


def delta_table_exists(uri: str) -> bool:
    """Whether a Delta table is at uri: its ``_delta_log`` holds at least one commit or checkpoint.

    Looks at the files only (opening the table would fail on tables delta-rs cannot read, and
    ``DeltaTable.is_deltatable()`` hangs against some S3-compatible servers).
    """
    from pyarrow import fs

    if not is_remote(uri) and not os.path.isdir(os.path.join(uri, "_delta_log")):
        return False
    filesys, base = filesystem(uri)
    try:
        entries = filesys.get_file_info(fs.FileSelector(f"{base}/_delta_log", allow_not_found=True))
    except OSError as exc:  # unreachable, forbidden: never mistake it for "no table here"
        from dsr.errors import InputError

        text = (str(exc).strip().splitlines() or [""])[0][:300]
        raise InputError(f"cannot read {uri} ({text})") from None
    return any(e.base_name.endswith(".json") or ".checkpoint." in e.base_name for e in entries)


def list_delta_tables(root: str, *, skip: tuple[str, ...] = ()) -> Iterator[str]:
    """Yield the path (relative to root, '/'-separated) of every Delta table below root.

    A Delta table is a directory holding ``_delta_log``; its subdirectories are not searched further.
    Relative paths listed in ``skip`` (and anything under them) are passed over.
    """
    from pyarrow import fs

    filesys, base = filesystem(root)
    info = filesys.get_file_info(base)
    if info.type == fs.FileType.NotFound:
        return
    stack = [""]
    while stack:
        rel = stack.pop()
        if rel and any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in skip):
            continue
        here = f"{base}/{rel}" if rel else base
        children = filesys.get_file_info(fs.FileSelector(here, allow_not_found=True))
        dirs = sorted(c.base_name for c in children if c.type == fs.FileType.Directory)
        if "_delta_log" in dirs:
            if rel:
                yield rel
            continue
        for name in reversed(dirs):
            if name.startswith((".", "_")) or "=" in name:
                continue
            stack.append(f"{rel}/{name}" if rel else name)
