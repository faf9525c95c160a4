"""What ``dsr demo`` shows of the export packages the run left: per package its format, tables and row counts,
and the manifest's files (size, sha256). Request ids and file names only: the demo prints no subject id."""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

__all__ = ["package_lines"]


def package_lines(policy: Any) -> list[str]:
    """Lines describing each completed export's package that is still there (one CSV and one JSON in the
    demo; the third went with its person's erasure)."""
    from dsr.core import control

    out: list[str] = []
    for r in control.list_requests(policy, status="completed"):
        uri = r.export_uri
        if r.kind != "export" or not uri or not os.path.isfile(uri):
            continue
        with zipfile.ZipFile(uri) as z:
            m = json.loads(z.read("manifest.json"))
        tables = ", ".join(f"{t['name']} {t['rows']}" for t in m["tables"])
        out.append(f"{os.path.basename(uri)}  format {m['format']}  expires {m['expires_at'][:10]}  rows: {tables}")
        out.append(f"  manifest.json: schema_version {m['schema_version']}, generated {m['generated_at'][:19]}")
        for f in m["files"]:
            out.append(f"    {f['name']:24} {f['size']:>9,} bytes  sha256 {f['sha256'][:16]}...")
    return out
