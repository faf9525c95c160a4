"""Foundation test helpers (policy, control table, audit log, CLI): small real Delta lakes in tmp_path.

Import it (``from tests.helpers import ...``); the fixtures built on it live in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_ENV = "DSR_PSEUDONYM_KEY"
KEY = "foundation-test-key-0123456789"

# The lake of make_lake(): events (delete), users (anonymise), consents (retain), geo_lookup (no subject).
BASE_POLICY = """\
lake: ./lake
exports: ./exports
pseudonym_key_env: DSR_PSEUDONYM_KEY
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
      last_ip: ipv4_24
    never_export: [password_hash]
  - name: consents
    path: consents
    subject: user_id
    erase: retain
    reason: "GDPR Art. 7(1): proof of consent"
"""

# Enough for the control table and the audit log: the lake need not hold any table for intake.
INTAKE_POLICY = """\
lake: ./lake
tables:
  - name: events
    path: events
    subject: user_id
    erase: delete
"""


@dataclass
class FoundationLake:
    """A directory with ``lake/`` (small Delta tables) and ``dsr.yml``."""

    root: Path
    policy_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def lake(self) -> Path:
        return self.root / "lake"


def write_table(path: Path | str, columns: Mapping[str, Any], *, schema: Any = None) -> Path:
    """Append a small Delta table (created if missing): columns maps names to Python lists (or pyarrow arrays)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    table = pa.table(dict(columns), schema=schema) if schema is not None else pa.table(dict(columns))
    write_deltalake(str(path), table, mode="append")
    return Path(path)


def make_lake(root: Path) -> FoundationLake:
    """events, users, consents (personal, in BASE_POLICY) and geo_lookup (not personal) under root/lake."""
    import datetime as dt

    import pyarrow as pa

    lake = root / "lake"
    write_table(lake / "events", {"user_id": ["u1", "u2", None], "page": ["/", "/cart", "/help"]})
    write_table(
        lake / "users",
        {
            "user_id": ["u1", "u2"],
            "email": ["a@example.org", "b@example.org"],
            "full_name": ["Ann", "Bob"],
            "birth_date": [dt.date(1980, 5, 17), dt.date(1991, 2, 3)],
            "last_ip": ["10.1.2.3", "10.4.5.6"],
            "password_hash": ["h1", "h2"],
        },
        schema=pa.schema([
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("email", pa.string()),
            pa.field("full_name", pa.string()),
            pa.field("birth_date", pa.date32()),
            pa.field("last_ip", pa.string()),
            pa.field("password_hash", pa.string()),
        ]),
    )
    write_table(lake / "consents", {"user_id": ["u1"], "purpose": ["marketing"]})
    write_table(lake / "geo_lookup", {"country": ["DE"], "region": ["EU"]})
    policy_path = write_policy(root, BASE_POLICY)
    return FoundationLake(root=root, policy_path=policy_path, env={KEY_ENV: KEY, "DSR_POLICY": str(policy_path)})


def write_policy(root: Path, text: str, name: str = "dsr.yml") -> Path:
    """Write a policy YAML (dedented) next to the lake; returns its path."""
    path = root / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def delta_version(path: Path | str) -> int | None:
    """The current version of the Delta table at path, or None when there is none."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(str(path)):
        return None
    return int(DeltaTable(str(path)).version())


def read_rows(path: Path | str) -> list[dict[str, Any]]:
    """Every row of a Delta table's current version."""
    from deltalake import DeltaTable

    from dsr.delta import tables as deltautil

    return list(deltautil.read_all(DeltaTable(str(path))).to_pylist())


def run_dsr(
    *args: str, cwd: Path | str | None = None, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dsr.cli ARGS`` in a fresh interpreter, as a script or a DAG would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dsr.cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )
