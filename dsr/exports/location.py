"""The exports location (checked before anything is written) and the removal of part files."""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from dsr.delta import storage
from dsr.errors import InputError
from dsr.exports.store import LEGACY_TMP_DOCUMENT, TMP_DOCUMENT, Store, check_id

CHECK_CONNECT_TIMEOUT = 3.0  # seconds, for check_location on S3 (one attempt, no retries)
CHECK_REQUEST_TIMEOUT = 5.0

# --- cleaning up --------------------------------------------------------------------------------------------


def remove_run_parts(exports: str, run_id: str) -> None:
    """Remove everything under ``<exports>/_parts/<run_id>/`` (nothing else; documents stay)."""
    store = Store(exports)
    run = store.path("_parts", check_id(run_id, "run id"))
    store.delete_tree(run)
    store.tidy(store.path("_parts"))


def remove_stale_parts(exports: str, live_run_ids: Collection[str]) -> int:
    """Remove the parts of every run not in ``live_run_ids``; returns how many runs' parts were removed.

    Local temporary documents (``<request_id>.json.<run_id>.tmp``) of those runs go too; one of the older
    ``<request_id>.json.tmp`` form names no run, so it is removed only when no run is live. Documents are
    never touched. (S3 has no temporary documents; pyarrow may leave an empty ``_parts/`` folder marker.)
    """
    store = Store(exports)
    live = set(live_run_ids)
    parts = store.path("_parts")
    removed = 0
    for name in store.folders(parts):
        if name not in live and store.delete_tree(f"{parts}/{name}"):
            removed += 1
    if not store.remote:
        store.tidy(parts)
        try:
            with os.scandir(store.root) as it:
                names = [e.name for e in it if e.name.endswith(".tmp") and e.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            names = []
        for name in names:
            m = TMP_DOCUMENT.fullmatch(name)
            if (m and m.group(2) not in live) or (not live and LEGACY_TMP_DOCUMENT.fullmatch(name)):
                store.delete_file(store.path(name))
    return removed


# --- the exports location -----------------------------------------------------------------------------------


def check_location(exports: str) -> None:
    """Fail with one line (``InputError``) unless documents can be written at ``exports``; writes nothing.

    Local: an existing folder must be a writable directory; a missing one must have, as its nearest existing
    ancestor, a writable directory (the folders are created, 0700, when the first file is written). S3
    (``s3://`` or ``s3a://``): the bucket must exist and answer, with short timeouts and no retries.
    """
    if not isinstance(exports, str) or not exports.strip():
        raise InputError("exports location is empty: use a local folder or s3://bucket/prefix")
    label = f"exports location {exports!r}"
    if "://" in exports:
        scheme, _, rest = exports.partition("://")
        if scheme not in ("s3", "s3a"):
            raise InputError(f"{label}: unsupported scheme {scheme + '://'!r}: use a local folder or "
                             "s3://bucket/prefix")
        if not rest.split("/", 1)[0]:
            raise InputError(f"{label}: no bucket: use s3://bucket/prefix")
        _check_s3(exports, label)
    else:
        storage.check_writable_folder(exports, label)


def _fail_fast_s3(exports: str) -> tuple[Any, str]:
    """storage.filesystem's S3 filesystem, with short timeouts and a single attempt."""
    from pyarrow import fs

    base, path = storage.filesystem(exports)
    try:
        _, (kwargs,) = base.__reduce__()  # the options storage.filesystem chose (pickling support)
        kwargs = dict(kwargs)
    except (TypeError, ValueError):  # not a plain S3FileSystem: keep it as it is
        return base, path
    kwargs.update(connect_timeout=CHECK_CONNECT_TIMEOUT, request_timeout=CHECK_REQUEST_TIMEOUT,
                  retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=1))
    return fs.S3FileSystem(**kwargs), path


def _check_s3(exports: str, label: str) -> None:
    import importlib.util

    from pyarrow import fs

    if importlib.util.find_spec("boto3") is None:  # packages and links go through boto3
        raise InputError(f"{label}: S3 exports need boto3 (pip install 'dsr-lake[s3]')")

    filesys, path = _fail_fast_s3(exports)
    bucket, _, prefix = path.partition("/")
    try:
        if filesys.get_file_info(bucket).type == fs.FileType.NotFound:
            raise InputError(f"{label}: bucket {bucket!r} does not exist")
        if prefix:
            filesys.get_file_info(path)  # can we list under the prefix
    except OSError as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise InputError(f"{label}: S3 cannot be reached or refused access: {reason}") from None
