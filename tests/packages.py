"""Reading export packages in tests: the members of ``<request_id>.zip`` (local path or s3:// URI) and the JSON
document of a json package."""

from __future__ import annotations

import csv
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


def tables(uri: str) -> dict[str, list[dict[str, Any]]]:
    """Each table's rows in a package of either format: a json package's objects as written, a csv package's
    rows as text (an empty cell is None)."""
    files = members(uri)
    m = json.loads(files["manifest.json"])
    if m["format"] == "json":
        return dict(json.loads(files["export.json"])["tables"])
    out = {}
    for t in m["tables"]:
        reader = csv.DictReader(io.StringIO(files[t["file"]].decode("utf-8"), newline=""))
        out[t["name"]] = [{k: (v if v != "" else None) for k, v in row.items()} for row in reader]
    return out
