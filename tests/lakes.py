"""A small, real Delta lake for engine, pipeline and DAG tests (not a fixture file: import it).

Subjects are numeric strings ("1001".."1040") so one id matches a text column (users, events, consents) and
an integer column (orders.user_no) alike; "x-77" is a subject that cannot be cast to the integer column.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import random
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY = "test-pseudonym-key-0123456789"
SUBJECTS = [str(1001 + i) for i in range(40)]
ERASE = ["1003", "1007", "1011", "1020", "x-77"]
EXPORT = ["1003", "1005", "1030"]

POLICY = """\
lake: ./lake
exports: ./exports
pseudonym_key_env: DSR_PSEUDONYM_KEY
export_before_erase: true
tables:
  - name: events
    path: events
    subject: user_id
    erase: delete
  - name: users
    path: users
    subject: user_id
    erase: anonymise
    mask:
      user_id: pseudonymise
      email: nullify
      full_name: {redact: "[erased]"}
      birth_date: year
      signup_at: month
      last_ip: ipv4_24
    never_export: [password_hash]
  - name: orders
    path: sales/orders
    subject: user_no
    erase: delete
  - name: consents
    path: consents
    subject: user_id
    erase: retain
    reason: "GDPR Art. 7(1): proof of consent"
exempt:
  - {path: geo_lookup, reason: "no personal data"}
"""


class _Root:
    """A remote lake root that joins with ``/`` like a Path."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")

    def __truediv__(self, part: str) -> _Root:
        return _Root(f"{self.uri}/{part}")

    def __str__(self) -> str:
        return self.uri


@dataclass
class Lake:
    root: Path
    policy_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def exports(self) -> Path:
        return self.root / "exports"


def _events(rng: random.Random, day: str, n: int, start: int) -> Any:
    import pyarrow as pa

    ids = [rng.choice(SUBJECTS) if rng.random() > 0.05 else None for _ in range(n)]
    return pa.table({
        "event_id": pa.array(range(start, start + n), pa.int64()),
        "user_id": pa.array(ids, pa.string()),
        "event_date": pa.array([day] * n, pa.string()),
        "page": pa.array([rng.choice(["/", "/cart", "/help"]) for _ in range(n)], pa.string()),
        "payload": pa.array([bytes([rng.randrange(256) for _ in range(3)]) for _ in range(n)], pa.binary()),
    })


def build(root: Path, *, seed: int = 11, lake_uri: str | None = None, exports_uri: str | None = None) -> Lake:
    """Write the lake and its policy under root (the lake itself at lake_uri, e.g. s3://bucket/prefix, when
    given); returns paths and the env the CLI needs."""
    import pyarrow as pa
    from deltalake import write_deltalake as _write

    from dsr.delta import storage

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    lake: Any = _Root(lake_uri) if lake_uri else root / "lake"

    def write_deltalake(uri: str, data: Any, **kw: Any) -> None:
        _write(uri, data, storage_options=storage.storage_options(uri), **kw)
    start = 0
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        for _ in range(3):  # several files per partition
            write_deltalake(str(lake / "events"), _events(rng, day, 60, start), mode="append",
                            partition_by=["event_date"])
            start += 60
    users = []
    for i, sid in enumerate(SUBJECTS):
        users.append({
            "user_id": sid, "email": f"person{i}@example.org", "full_name": f"Person {i}",
            "birth_date": dt.date(1970 + i % 30, 1 + i % 12, 1 + i % 28),
            "signup_at": dt.datetime(2020, 1 + i % 12, 1 + i % 28, i % 24, 7, tzinfo=dt.UTC),
            "last_ip": f"10.{i}.{i * 3 % 256}.{i * 7 % 256}" if i % 9 else "not-an-ip",
            "password_hash": f"hash{i:04d}",
        })
    schema = pa.schema([
        pa.field("user_id", pa.string(), nullable=False), pa.field("email", pa.string()),
        pa.field("full_name", pa.string()), pa.field("birth_date", pa.date32()),
        pa.field("signup_at", pa.timestamp("us", tz="UTC")), pa.field("last_ip", pa.string()),
        pa.field("password_hash", pa.string()),
    ])
    half = len(users) // 2
    write_deltalake(str(lake / "users"), pa.Table.from_pylist(users[:half], schema=schema))
    write_deltalake(str(lake / "users"), pa.Table.from_pylist(users[half:], schema=schema), mode="append")
    orders = [{
        "order_id": f"o{i:05d}", "user_no": int(rng.choice(SUBJECTS)) if i % 13 else None,
        "amount": decimal.Decimal(rng.randrange(100, 99999)) / 100,
        "ordered_at": dt.datetime(2025, 1 + i % 12, 1 + i % 28, tzinfo=dt.UTC),
    } for i in range(150)]
    oschema = pa.schema([
        pa.field("order_id", pa.string()), pa.field("user_no", pa.int64()),
        pa.field("amount", pa.decimal128(10, 2)), pa.field("ordered_at", pa.timestamp("us", tz="UTC")),
    ])
    for part in range(3):
        write_deltalake(str(lake / "sales" / "orders"),
                        pa.Table.from_pylist(orders[part * 50:(part + 1) * 50], schema=oschema), mode="append")
    write_deltalake(str(lake / "consents"), pa.table({
        "user_id": pa.array(SUBJECTS, pa.string()), "purpose": pa.array(["marketing"] * len(SUBJECTS)),
    }))
    write_deltalake(str(lake / "geo_lookup"), pa.table({"country": ["DE", "FR"], "region": ["EU", "EU"]}))
    policy_path = root / "dsr.yml"
    text = textwrap.dedent(POLICY)
    if lake_uri:
        text = text.replace("lake: ./lake", f"lake: {lake_uri}")
    if exports_uri:
        text = text.replace("exports: ./exports", f"exports: {exports_uri}")
    policy_path.write_text(text, encoding="utf-8")
    return Lake(root=root, policy_path=policy_path, env={"DSR_PSEUDONYM_KEY": KEY, "DSR_POLICY": str(policy_path)})


def snapshot(path: Path | str) -> list[dict[str, Any]]:
    """Every row of a Delta table's current version, sorted, for value-for-value comparison."""
    from deltalake import DeltaTable

    from dsr.delta import storage
    from dsr.delta.tables import pyarrow_dataset

    dt_ = DeltaTable(str(path), storage_options=storage.storage_options(str(path)))
    rows = pyarrow_dataset(dt_).to_table().to_pylist()
    return sorted(rows, key=lambda r: repr(sorted(r.items())))


def env_with(lake: Lake) -> dict[str, str]:
    return {**os.environ, **lake.env}
