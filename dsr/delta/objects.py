"""Whole-object writes, exclusive creates and deletes, on a local folder or S3, each one atomic.

What a crash-safe multi-step command (the purge, the leases) needs from storage, and what pyarrow's filesystems
do not promise:

* :func:`write_whole` -- a reader sees the old object or the new one, never part of it: locally a temporary
  file beside the target (a dot name no Delta reader lists) that is flushed, synced and renamed over it; on S3
  one PUT (an object is visible only once complete);
* :func:`create_exclusive` -- creates an object only if none is there (locally a hard link of a complete
  temporary file, which fails when the name exists; on S3 ``If-None-Match: *``); False when it was there;
* :func:`delete` -- removes objects; on S3 through the API directly (pyarrow's ``delete_file`` leaves a 0-byte
  "folder marker" behind when a prefix empties: a ``user_id=<id>/`` key would outlive the person's files).

Objects are named by a root (a local folder or ``s3://bucket/prefix``) and paths relative to it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import urllib.parse
from collections.abc import Iterable
from typing import Any

from dsr.delta import storage

__all__ = ["TEMPORARY", "create_exclusive", "delete", "read", "s3_client", "split", "write_whole"]

TEMPORARY = ".dsr-tmp"  # the suffix of a local temporary file (its name also starts with a dot)


def s3_client() -> Any:
    """A boto3 S3 client for the usual AWS_* environment variables (``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL`` for an S3-compatible server)."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", endpoint_url=endpoint, region_name=region,
                        config=Config(signature_version="s3v4", retries={"max_attempts": 3}))


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parts = urllib.parse.urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


def _key(root: str, rel: str) -> tuple[str, str]:
    bucket, prefix = split(root)
    return bucket, f"{prefix.rstrip('/')}/{rel}" if prefix else rel


def _local(root: str, rel: str) -> str:
    return os.path.join(os.path.abspath(root), *rel.split("/"))


def _temporary_beside(path: str, data: bytes) -> str:
    """A complete, synced temporary file in ``path``'s folder holding ``data``; returns its path."""
    folder, name = os.path.split(path)
    temp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}{TEMPORARY}")
    with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return temp


def _staged(root: str, rel: str, data: bytes) -> tuple[str, str]:
    """The local path of ``rel`` below ``root`` (its folder made) and a complete temporary file beside it."""
    path = _local(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path, _temporary_beside(path, data)


def _sync_folder(path: str) -> None:
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_whole(root: str, rel: str, data: bytes) -> None:
    """Write ``data`` as the object ``rel`` below ``root``, replacing what is there, atomically."""
    if storage.is_remote(root):
        bucket, key = _key(root, rel)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path, temp = _staged(root, rel, data)
    try:
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    _sync_folder(path)
    folder, name = os.path.split(path)
    with contextlib.suppress(FileNotFoundError):  # Hadoop's checksum of the old bytes (Spark on a local disk)
        os.unlink(os.path.join(folder, f".{name}.crc"))  # would fail every read of the new ones


def create_exclusive(root: str, rel: str, data: bytes) -> bool:
    """Create the object ``rel`` below ``root`` holding ``data`` unless one is there: True when created."""
    if storage.is_remote(root):
        from botocore.exceptions import ClientError

        bucket, key = _key(root, rel)
        try:
            s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True
    path, temp = _staged(root, rel, data)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temp)
    _sync_folder(path)
    return True


def read(root: str, rel: str) -> bytes | None:
    """The bytes of the object ``rel`` below ``root``; None when there is none."""
    if storage.is_remote(root):
        from botocore.exceptions import ClientError

        bucket, key = _key(root, rel)
        try:
            return bytes(s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
    try:
        with open(_local(root, rel), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def delete(root: str, rels: Iterable[str]) -> int:
    """Delete these objects below ``root`` (those already gone are skipped); returns how many were asked for.
    On S3, keys ending in ``/`` (folder markers) may be given too."""
    todo = list(dict.fromkeys(rels))
    if storage.is_remote(root):
        client = s3_client()
        for i in range(0, len(todo), 1000):
            bucket = _key(root, "")[0]
            chunk = [{"Key": _key(root, rel)[1]} for rel in todo[i:i + 1000]]
            client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        return len(todo)
    for rel in todo:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_local(root, rel))
    return len(todo)
