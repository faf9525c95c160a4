"""The demo lake: generated tables, a policy, a pseudonym key and a few requests (``build_demo_lake``).

Deterministic for a seed (seeded ``random``, fixed dates) except for the pseudonym key, which is random unless
given. ``dsr.cli.demo`` runs the Airflow DAG on it.

Layout of DIR::

    dsr.yml          the policy (lake: ./lake, exports: ./exports)
    demo.env         DSR_POLICY and DSR_PSEUDONYM_KEY, to ``source`` before using ``dsr`` on the demo
    lake/            users, events (partitioned by event_date), orders, consents, support_tickets, geo_lookup
    exports/         the export packages (after the run)
    airflow/         the throw-away AIRFLOW_HOME (SQLite metadata DB, task logs)
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEMO_MARKER", "KEY_ENV", "DemoInfo", "DemoRequest", "build_demo_lake"]

from dsr.cli.demodata import (
    consents_table,
    events_table,
    geo_table,
    orders_table,
    people,
    tickets_table,
    users_table,
    write,
)

DEMO_MARKER = ".dsr-demo"
"""A file in every demo directory: ``run_demo`` only wipes a directory that holds it (or is empty)."""

KEY_ENV = "DSR_PSEUDONYM_KEY"

_LAST_DAY = dt.date(2026, 10, 31)


@dataclass(frozen=True)
class DemoRequest:
    request_id: str
    kind: str
    subject_id: str
    table_hint: str
    """'user_id' or 'customer_no': which kind of id the subject is (for the demo's own checks)."""


@dataclass
class DemoInfo:
    """What ``build_demo_lake`` wrote. Paths are absolute."""

    dir: str
    lake: str
    exports: str
    policy_path: str
    env_path: str
    key: str
    rows: dict[str, int] = field(default_factory=dict)
    """Rows written per table name."""
    requests: list[DemoRequest] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The environment a process needs to work on the demo (policy and pseudonym key)."""
        return {"DSR_POLICY": self.policy_path, KEY_ENV: self.key}

    def subjects(self, kind: str) -> list[str]:
        return [r.subject_id for r in self.requests if r.kind == kind]


# --- the generator ---------------------------------------------------------------------------------------


def build_demo_lake(
    dir: str | os.PathLike[str], *, seed: int = 7, scale: float = 1.0, key: str | None = None,
    requests: bool = True,
) -> DemoInfo:
    """Write the demo lake, policy, ``demo.env`` and (unless ``requests=False``) the demo requests.

    ``dir`` must not hold a lake yet. ``scale`` 1.0 gives ~2,000 users and ~40,000 events over 14 daily
    partitions (4 files each); tests use a small scale such as 0.02.

    The tables are written in one fixed order: the seeded random stream must not change.
    """
    from dsr.errors import InputError

    if scale <= 0:
        raise InputError("demo: scale must be positive")
    root = Path(dir).resolve()
    lake = root / "lake"
    if lake.exists():
        raise InputError(f"demo: {lake} exists already; use an empty directory")
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text("dsr demo directory: `dsr demo` may wipe and rebuild it\n", encoding="utf-8")
    lake.mkdir()
    exports = root / "exports"
    exports.mkdir(mode=0o700, exist_ok=True)
    os.chmod(exports, 0o700)  # the umask may have taken bits away; packages are 0600 files in 0700 folders
    key = key or secrets.token_hex(16)

    rng = random.Random(seed)
    rows: dict[str, int] = {}
    users = people(rng, max(30, round(2000 * scale)))
    rows["users"] = write(lake / "users", users_table(users), parts=2)
    user_ids = [u["user_id"] for u in users]
    days = [_LAST_DAY - dt.timedelta(days=i) for i in range(max(3, min(14, round(14 * scale ** 0.5))) - 1, -1, -1)]
    appends = 4 if scale >= 0.25 else 2
    n_events = max(300, round(40_000 * scale))
    rows["events"] = 0
    active: set[str] = set()
    for part in range(appends):
        batch = events_table(rng, user_ids, days, n_events // appends, offset=part * (n_events // appends))
        active.update(u for u in batch.column("user_id").to_pylist() if u is not None)
        rows["events"] += write(lake / "events", batch, partition_by=["event_date"])
    orders = orders_table(rng, user_ids, max(60, round(6000 * scale)))
    buyers = set(orders.column("user_id").to_pylist())
    rows["orders"] = write(lake / "orders", orders, parts=2)
    rows["consents"] = write(lake / "consents", consents_table(rng, user_ids))
    tickets = tickets_table(rng, max(20, round(600 * scale)), max(40, round(1500 * scale)))
    customers = sorted(set(tickets.column("customer_no").to_pylist()))
    rows["support_tickets"] = write(lake / "support_tickets", tickets, parts=2)
    rows["geo_lookup"] = write(lake / "geo_lookup", geo_table())

    policy_path = root / "dsr.yml"
    policy_path.write_text(POLICY_YAML, encoding="utf-8")
    env_path = root / "demo.env"
    with os.fdopen(os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
        f.write(
            f"# Source me to use `dsr` on the demo:  source {shlex.quote(str(env_path))}\n"
            f"export DSR_POLICY={shlex.quote(str(policy_path))}\n"
            f"export {KEY_ENV}={shlex.quote(key)}\n"
        )
    info = DemoInfo(
        dir=str(root), lake=str(lake), exports=str(exports), policy_path=str(policy_path),
        env_path=str(env_path), key=key, rows=rows,
    )
    if requests:
        candidates = [u for u in user_ids if u in active and u in buyers]
        info.requests = _file_requests(info, rng, candidates if len(candidates) >= 7 else user_ids, customers)
    return info


POLICY_YAML = """\
# dsr-lake demo policy. Paths are relative to this file.
lake: ./lake
control: _dsr
exports: ./exports
pseudonym_key_env: DSR_PSEUDONYM_KEY
export_before_erase: true
claim_ttl_minutes: 30
max_attempts: 3
purge_after_hours: 0    # the demo purges at once; the default is 168 (a week)
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
  - name: orders
    path: orders
    subject: user_id
    erase: anonymise            # analysts keep revenue per day; the buyer becomes a pseudonym
    mask:
      user_id: pseudonymise     # the same pseudonym as in users, so the two still join
  - name: consents
    path: consents
    subject: user_id
    erase: retain
    reason: "GDPR Art. 7(1): proof of consent"
  - name: support_tickets
    path: support_tickets
    subject: customer_no        # an integer subject column: requests for customer numbers match here
    erase: anonymise
    mask:
      customer_no: pseudonymise
      body: {redact: "[erased]"}
exempt:
  - {path: geo_lookup, reason: "no personal data"}
"""




















@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _file_requests(info: DemoInfo, rng: random.Random, user_ids: list[str], customers: list[int]) -> list[DemoRequest]:
    """Five erasures and three exports (the first as CSV, the others JSON); one user asks for both (the export
    runs first)."""
    from dsr.core import control
    from dsr.core.policy import load_policy

    picked = rng.sample(user_ids, 7)
    erase_users, export_only, both = picked[:4], picked[4:6], picked[6]
    customer = str(rng.choice(customers))
    plan = (
        [("export", s, "user_id") for s in [*export_only, both]]
        + [("erase", s, "user_id") for s in [*erase_users, both]]
        + [("erase", customer, "customer_no")]
    )
    out = []
    with _environ(info.env):
        policy = load_policy(info.policy_path)
        for n, (kind, subject, hint) in enumerate(plan, start=1):
            rid, _ = control.submit(policy, kind, subject, ticket=f"DEMO-{n:03d}", requested_by="privacy@example.com",
                                    export_format="csv" if n == 1 else None)
            out.append(DemoRequest(rid, kind, subject, hint))
    return out
