"""An independent scan of every byte under some roots (local folders or ``s3://bucket/prefix``) for subject ids.

It proves a purge; it is written with plain boto3, pyarrow and json, and shares nothing with dsr's own residue
scan (``dsr.delta.physical``), which is what it checks. Every object is read:

* its name (the key below the root: a ``user_id=<id>/`` directory, a file named after a request...);
* its raw bytes, as text, for the text ids (JSON commits, checkpoints, deletion vectors, export documents,
  checksums: anything);
* a parquet file's decoded values, every column flattened (data, change data, checkpoints with their ``stats``
  strings and ``partitionValues`` maps), for the text ids; compressed pages hide text from the raw search;
* for integer ids of one column (``ints``: column -> values), the decoded values of that column in parquet
  files, and its min/max statistics and partition values in the ``add``/``remove``/``cdc`` actions of JSON
  commits and parquet checkpoints, where a number cannot be told from other numbers by text.

A text id is found as a whole token (``a-gone-01`` not inside ``xa-gone-011``), as :class:`tests.leaks.Leaks`
does.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.leaks import Leaks

__all__ = ["column_places", "objects", "scan"]


def objects(root: str | Path) -> Iterator[tuple[str, bytes]]:
    """(key below the root, bytes) of every file under a local folder or an ``s3://bucket/prefix``."""
    text = str(root)
    if not text.startswith("s3://"):
        base = Path(text)
        for f in sorted(base.rglob("*")):
            if f.is_file():
                yield f.relative_to(base).as_posix(), f.read_bytes()
        return
    import os

    import boto3

    bucket, _, prefix = text[len("s3://"):].partition("/")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            yield key[len(prefix):].lstrip("/"), body


def _leaves(value: Any, name: str = "") -> Iterator[tuple[str, Any]]:
    """(leaf name, value) of a decoded parquet cell: structs and maps walked, lists flattened."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, str(k))
    elif isinstance(value, list):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):  # a map: (key, value) pairs
            for k, v in value:
                yield from _leaves(v, str(k))
        else:
            for v in value:
                yield from _leaves(v, name)
    else:
        yield name, value


def _actions(name: str, data: bytes) -> list[dict[str, Any]]:
    """The actions of a Delta log file: a JSON commit, or a parquet checkpoint or sidecar, as dicts."""
    if name.endswith(".json"):
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    import pyarrow.parquet as pq

    return [{k: v for k, v in row.items() if v is not None} for row in pq.read_table(io.BytesIO(data)).to_pylist()]


def _action_ints(actions: Iterable[Mapping[str, Any]], ints: Mapping[str, set[int]]) -> int:
    """Statistics and partition values of ``ints``' columns that are one of their values."""
    hits = 0
    for action in actions:
        for kind in ("add", "remove", "cdc"):
            a = action.get(kind)
            if not isinstance(a, dict):
                continue
            values = a.get("partitionValues") or {}
            values = dict(values) if isinstance(values, list) else values
            stats = json.loads(a["stats"]) if isinstance(a.get("stats"), str) else {}
            parsed = a.get("stats_parsed") or {}
            for column, wanted in ints.items():
                texts = {str(w) for w in wanted}
                hits += values.get(column) in texts
                for source in (stats, parsed):
                    for bound in ("minValues", "maxValues"):
                        hits += (source.get(bound) or {}).get(column) in wanted
    return hits


def scan(roots: Iterable[str | Path], texts: Iterable[str], ints: Mapping[str, set[int]] | None = None
         ) -> Counter[str]:
    """Where under the roots the ids are: ``root: place`` -> count, places ``names``, ``bytes``, ``parquet
    values`` (text ids), ``integer values``, ``log integers`` (integer ids). Empty: nothing found."""
    import pyarrow.parquet as pq

    leaks = Leaks(texts, whole_token=True)
    ints = dict(ints or {})
    found: Counter[str] = Counter()
    for root in roots:
        for key, data in objects(root):
            where = f"{root}: "
            found[where + "names"] += bool(leaks.found_in(key))
            found[where + "bytes"] += bool(leaks.found_in(data.decode("utf-8", errors="replace")))
            in_log = "_delta_log/" in key
            if key.endswith(".parquet"):
                table = pq.read_table(io.BytesIO(data))
                for row in table.to_pylist():
                    for leaf, value in _leaves(row):
                        if isinstance(value, str):
                            found[where + "parquet values"] += bool(leaks.found_in(value))
                        elif type(value) is int and not in_log and value in ints.get(leaf, ()):
                            found[where + "integer values"] += 1
            if in_log and key.endswith((".json", ".parquet")) and ints:
                found[where + "log integers"] += _action_ints(_actions(key, data), ints)
    return +found


def _plain(text: str) -> str:
    """A name with every level of percent-escaping undone (``x=A%252FA`` -> ``x=A/A``)."""
    from urllib.parse import unquote

    while unquote(text) != text:
        text = unquote(text)
    return text


def column_places(root: Path, names: Iterable[str], wanted: Iterable[Any]) -> Counter[str]:
    """Where under a local table folder values of ``wanted`` are held for a column of ``names`` (logical and
    physical): place -> count, places ``directory names`` (a ``name=value`` folder, any escaping), ``data``
    (a data file's rows), ``log partition values`` and ``log statistics`` (min/max) of add/remove/cdc actions in
    JSON commits and checkpoints. Empty: nowhere."""
    import pyarrow.parquet as pq

    columns, values = set(names), set(wanted)
    texts = {str(w) for w in values}
    found: Counter[str] = Counter()
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).as_posix()
        folder = rel.split("/") if f.is_dir() else rel.split("/")[:-1]
        found["directory names"] += any(c in columns and _plain(v) in texts
                                        for c, eq, v in (p.partition("=") for p in folder[-1:]) if eq)
        if not f.is_file():
            continue
        if "_delta_log" not in rel and f.suffix == ".parquet":
            for column in columns & set(pq.read_schema(f).names):
                found["data"] += sum(v in values for v in pq.read_table(f, columns=[column]).column(0).to_pylist())
        elif "_delta_log" in rel and f.suffix in (".json", ".parquet"):
            for action in _actions(f.name, f.read_bytes()):
                for kind in ("add", "remove", "cdc"):
                    a = action.get(kind) or {}
                    parts = a.get("partitionValues") or {}
                    parts = dict(parts) if isinstance(parts, list) else parts
                    stats = json.loads(a["stats"]) if isinstance(a.get("stats"), str) else {}
                    for column in columns:
                        found["log partition values"] += parts.get(column) is not None and \
                            str(parts.get(column)) in texts
                        found["log statistics"] += sum((stats.get(b) or {}).get(column) in values
                                                       for b in ("minValues", "maxValues"))
    return +found
