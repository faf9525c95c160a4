"""Reading export packages in tests: the members of ``<request_id>.zip`` (local path or s3:// URI) and the JSON
document of a json package."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any


def package_bytes(uri: str) -> bytes:
    if uri.startswith("s3://"):
        from dsr.exports.s3upload import client, split

        bucket, key = split(uri)
        return bytes(client().get_object(Bucket=bucket, Key=key)["Body"].read())
    return Path(uri).read_bytes()


def members(uri: str | bytes) -> dict[str, bytes]:
    data = package_bytes(uri) if isinstance(uri, str) else uri
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def document_text(uri: str) -> str:
    """The export document (``export.json``) of a json package, as text."""
    return members(uri)["export.json"].decode("utf-8")


def document(uri: str | None) -> Any:
    return json.loads(document_text(str(uri)))


def manifest(uri: str | bytes) -> Any:
    return json.loads(members(uri)["manifest.json"])
