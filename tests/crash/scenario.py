"""The crash tests' scenario: one lake with every place an erased person hides, run once, then copied per trial.

Tables (``lake/``):

* ``events`` -- delete; several commits and a checkpoint (a purge deletes that checkpoint and writes its own),
  and a Parquet file holding an erased id that no log action names (Spark's leftovers, a failed writer's file);
* ``by_subject`` -- delete, partitioned by its subject column, whose values need escaping (``/``, space, ``%``);
  a Spark-style ``.part-*.parquet.crc`` checksum beside every data file;
* ``cdf`` -- delete, change data feed on: the erase writes the deleted rows into ``_change_data/``;
* ``stats`` -- anonymise (pseudonymise + nullify), two files: an erased id is one's minimum, another's maximum;
* ``dv`` -- the vendored ``log-replay-dv-key-cases`` (Databricks, deletion vectors): ``0``, ``7``, ``14`` are
  masked by deletion vectors in its one file (integers: the table forces them);

and exports: two of the erased people were exported first (``export_before_erase``), one kept person too.
``purge_after_hours: 0``. :func:`build` files the requests and runs ``dsr run`` once; every request completes.

A :class:`Place` is where one copy lives: a local folder (``dsr.yml``, ``lake/``, ``exports/``; the policy's
paths are relative), or S3 buckets (lake, exports) with the policy in a local folder.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import lakes
from tests import real_tables as rt

__all__ = ["ERASED", "ERASED_INTS", "EXPORTED", "KEPT", "KEPT_EXPORTED", "TABLES", "Place", "Scenario", "build"]

# Distinctive text ids: whole tokens no random name, number or hash holds by chance.
ERASED = ["zq-gone-41a7", "zq-gone/52b8", "zq gone 63c9", "zq-gone%-74d0"]
ERASED_INTS = {"id": {0, 7, 14}}  # the dv table's subject column: already behind its deletion vectors
KEPT = ["zs-keep-85e1", "zs-keep/96f2", "zs keep a7b3", "zs-keep%-b8c4", "ka-keep-c9d5"]
EXPORTED = ["zq-gone-41a7", "zq-gone%-74d0"]  # exported, then erased: their packages go with the purge
KEPT_EXPORTED = "zs-keep-85e1"  # exported, never erased: the package stays
TABLES = ["events", "by_subject", "cdf", "stats", "dv"]
OWN_TABLES = ["_dsr/requests", "_dsr/audit", "_dsr/suppression"]
ORPHAN = "part-00099-5f1d2c3b-0a9e-4d41-9c57-0123456789ab-c000.snappy.parquet"  # named by no log action

POLICY = """\
lake: {lake}
exports: {exports}
pseudonym_key_env: {key_env}
export_before_erase: true
purge_after_hours: 0
tables:
  - {{name: events, path: events, subject: user_id, erase: delete}}
  - {{name: by_subject, path: by_subject, subject: user_id, erase: delete}}
  - {{name: cdf, path: cdf, subject: user_id, erase: delete}}
  - name: stats
    path: stats
    subject: user_id
    erase: anonymise
    mask:
      user_id: pseudonymise
      email: nullify
  - {{name: dv, path: dv, subject: id, erase: delete}}
"""


@dataclass(frozen=True)
class Place:
    """One copy of the scenario: ``root`` holds ``dsr.yml`` (and, on local storage, ``lake/`` and ``exports/``);
    ``lake`` and ``exports`` are the policy's locations (folders or ``s3://bucket/prefix``)."""

    root: Path
    lake: str
    exports: str

    @property
    def policy_path(self) -> Path:
        return self.root / "dsr.yml"

    @property
    def remote(self) -> bool:
        return self.lake.startswith("s3://")

    @property
    def env(self) -> dict[str, str]:
        """What the ``dsr`` command needs: the pseudonym key and the policy."""
        return {lakes.KEY_ENV: lakes.KEY, "DSR_POLICY": str(self.policy_path)}

    def table_uris(self) -> dict[str, str]:
        """Every table to read back: the data tables and dsr's own (when present)."""
        return {name: f"{self.lake}/{name}" for name in TABLES + OWN_TABLES}

    def roots(self) -> dict[str, str]:
        """The places a purge may write: ``lake`` and ``exports`` -> their location."""
        return {"lake": self.lake, "exports": self.exports}


def write_policy(root: Path, lake: str | None = None, exports: str | None = None) -> Place:
    """The policy in ``root``: S3 locations, or (None) ``./lake`` and ``./exports`` beside it."""
    root.mkdir(parents=True, exist_ok=True)
    text = POLICY.format(lake=lake or "./lake", exports=exports or "./exports", key_env=lakes.KEY_ENV)
    (root / "dsr.yml").write_text(text, encoding="utf-8")
    return Place(root, lake or str(root / "lake"), exports or str(root / "exports"))


# --- storage: the few operations the scenario needs, on a folder or an S3 prefix --------------------------------


def s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _split(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


def put(uri: str, data: bytes) -> None:
    """Write one file (a folder path or an ``s3://`` key)."""
    if uri.startswith("s3://"):
        bucket, key = _split(uri)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
    else:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_bytes(data)


def listing(uri: str) -> list[str]:
    """Every file below a folder or ``s3://`` prefix, relative to it."""
    if not uri.startswith("s3://"):
        base = Path(uri)
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()) if base.exists() else []
    bucket, prefix = _split(uri)
    out = []
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        out += [item["Key"][len(prefix) + 1:] for item in page.get("Contents", [])]
    return sorted(out)


def copy_tree(source: str, target: str) -> None:
    """Copy every file below ``source`` to the same relative path below ``target`` (S3: server side)."""
    if not source.startswith("s3://"):
        shutil.copytree(source, target, dirs_exist_ok=True)
        return
    from concurrent.futures import ThreadPoolExecutor

    client = s3_client()
    (sb, sp), (tb, tp) = _split(source), _split(target)

    def one(rel: str) -> None:
        client.copy_object(Bucket=tb, Key=f"{tp}/{rel}", CopySource={"Bucket": sb, "Key": f"{sp}/{rel}"})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, listing(source)))


# --- building ---------------------------------------------------------------------------------------------


def _events_rows(batch: int) -> dict[str, list[Any]]:
    people = ERASED + KEPT
    ids = [people[(batch + i) % len(people)] for i in range(6)]
    return {"user_id": ids, "seq": [batch * 10 + i for i in range(6)], "page": [f"/p{batch}/{i}" for i in range(6)]}


def _checksums(table: str) -> None:
    """A Spark-style checksum ``.<data file>.crc`` beside every data file of the table (any bytes will do)."""
    import zlib

    for rel in listing(table):
        name = rel.rsplit("/", 1)[-1]
        if "_delta_log/" in rel or not name.endswith(".parquet"):
            continue
        folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
        put(f"{table}/{folder}.{name}.crc", b"crc\x00" + zlib.crc32(rel.encode()).to_bytes(4, "big"))


def _orphan(table: str) -> None:
    """A Parquet file holding an erased id that no log action names."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"user_id": [ERASED[1]], "seq": [999], "page": ["/orphan"]}), buf)
    put(f"{table}/{ORPHAN}", buf.getvalue())


def _vendored_dv(target: str) -> None:
    source = rt.VENDORED / "log-replay-dv-key-cases"
    for f in sorted(source.rglob("*")):
        if f.is_file():
            put(f"{target}/{f.relative_to(source).as_posix()}", f.read_bytes())


def write_tables(lake: str) -> None:
    """The scenario's data tables under ``lake`` (a folder or ``s3://bucket/prefix``)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    from dsr.delta import storage

    events = f"{lake}/events"
    for batch in range(6):
        lakes.write_table(events, _events_rows(batch))
    DeltaTable(events, storage_options=storage.storage_options(events)).create_checkpoint()
    lakes.write_table(events, _events_rows(6))
    _orphan(events)

    by_subject = f"{lake}/by_subject"
    lakes.write_table(by_subject, {"user_id": ERASED + KEPT[:4], "page": [f"/b{i}" for i in range(8)]},
                      partition_by=["user_id"])
    lakes.write_table(by_subject, {"user_id": [ERASED[1], ERASED[2], KEPT[1]], "page": ["/c0", "/c1", "/c2"]},
                      partition_by=["user_id"])
    _checksums(by_subject)

    cdf = f"{lake}/cdf"
    lakes.write_table(cdf, {"user_id": [ERASED[0], ERASED[2], KEPT[0], KEPT[4]], "n": [1, 2, 3, 4]},
                      configuration={"delta.enableChangeDataFeed": "true"})
    lakes.write_table(cdf, {"user_id": [ERASED[3], KEPT[0]], "n": [5, 6]})

    schema = pa.schema([pa.field("user_id", pa.string()), pa.field("email", pa.string())])
    minimum = [ERASED[0], KEPT[0], KEPT[1]]  # zq-gone-41a7 is this file's minimum
    maximum = [KEPT[4], ERASED[3]]  # zq-gone%-74d0 is this file's maximum
    for ids in (minimum, maximum):
        lakes.write_table(f"{lake}/stats", {"user_id": ids, "email": [f"{i}@example.org" for i in ids]},
                          schema=schema)

    _vendored_dv(f"{lake}/dv")


@dataclass
class Scenario:
    """The scenario after its run: the place it ran in (``original``: the control table names its packages by
    absolute path), the pristine copy trials copy from (``snapshot``), the request ids, the rows of every data
    table right after the run (as Sail reads them), the tables Sail could not read already (a trial cannot be
    blamed for those), and how to make a fresh copy."""

    original: Place
    snapshot: Place
    requests: dict[str, str]  # subject id -> erase request id
    exports: dict[str, str]  # subject id -> export request id
    tables: list[str] = field(default_factory=list)  # every table after the run (dsr's own: those it has)
    rows: dict[str, Counter[str]] = field(default_factory=dict)
    sail_unreadable: dict[str, str] = field(default_factory=dict)  # table -> why Sail failed right after the run
    copier: Callable[[Place, str], Place] | None = None
    _count: Iterator[int] = field(default_factory=itertools.count)

    def fresh(self, label: str = "trial") -> Place:
        """A new copy of the snapshot: where one trial runs. The original's exports are put back as they were
        after the run first (a purge in a copy may delete them: the control table names them by absolute
        path), so every trial meets the same world."""
        assert self.copier is not None
        copy_tree(self.snapshot.exports, self.original.exports)
        return self.copier(self.snapshot, f"{label}{next(self._count)}")


def file_and_run(place: Place) -> tuple[dict[str, str], dict[str, str]]:
    """File the erasures and exports, run ``dsr run`` once; every request must complete."""
    from tests.invoke import dsr

    def cli(*args: str) -> str:
        out = dsr("--policy", str(place.policy_path), *args, env=place.env)
        assert out.returncode == 0, (args[:2], out.returncode, out.stderr[-2000:])
        return out.stdout

    erase = {sid: cli("request", "erase", sid).strip()
             for sid in ERASED + [str(i) for v in ERASED_INTS.values() for i in sorted(v)]}
    export = {sid: cli("request", "export", sid).strip() for sid in [*EXPORTED, KEPT_EXPORTED]}
    cli("run", "--json")
    states = {r["request_id"]: r["status"] for r in json.loads(cli("requests", "--json"))}
    assert set(states.values()) == {"completed"}, sorted(states.values())
    return erase, export


def build(original: Place) -> tuple[dict[str, str], dict[str, str]]:
    """Write the tables at the place and run dsr on them."""
    write_tables(original.lake)
    return file_and_run(original)


def local_copier(base: Path) -> Callable[[Place, str], Place]:
    def copy(source: Place, name: str) -> Place:
        target = base / name
        shutil.copytree(source.root, target)
        return Place(target, str(target / "lake"), str(target / "exports"))

    return copy


def s3_copier(base: Path, token: str) -> Callable[[Place, str], Place]:
    """Copies into fresh buckets ``<token>-<name>-l`` (lake) and ``-x`` (exports), server side."""

    def copy(source: Place, name: str) -> Place:
        lake_bucket, exports_bucket = f"{token}-{name}-l", f"{token}-{name}-x"
        client = s3_client()
        for b in (lake_bucket, exports_bucket):
            client.create_bucket(Bucket=b)
        lake, exports = f"s3://{lake_bucket}/lake", f"s3://{exports_bucket}/docs"
        copy_tree(source.lake, lake)
        copy_tree(source.exports, exports)
        return write_policy(base / name, lake, exports)

    return copy


def new_token() -> str:
    return "ck" + uuid.uuid4().hex[:8]
