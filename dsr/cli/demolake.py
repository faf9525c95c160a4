"""The demo lake: generated tables, a policy, a pseudonym key and a few requests (``build_demo_lake``).

Deterministic for a seed (seeded ``random``, fixed dates) except for the pseudonym key, which is random unless
given. ``dsr.cli.demo`` runs the Airflow DAG on it.

Layout of DIR::

    dsr.yml          the policy (lake: ./lake, exports: ./exports)
    demo.env         DSR_POLICY and DSR_PSEUDONYM_KEY, to ``source`` before using ``dsr`` on the demo
    lake/            users, events (partitioned by event_date), orders, consents, support_tickets, customers,
                     geo_lookup
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
from typing import Any

__all__ = ["DEMO_MARKER", "KEY_ENV", "DemoInfo", "DemoRequest", "build_demo_lake"]

from dsr.cli.demodata import (
    consents_table,
    customers_table,
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
    """'user_id', 'email' or 'customer_no': the kind of identifier the request was filed with."""
    known: tuple[tuple[str, str], ...] = ()
    """Every (kind, value) the demo knows of the person (for its own residue scan after the purge)."""


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
        """The identifier each request of ``kind`` (erase, export) was filed with, as typed."""
        return [r.subject_id for r in self.requests if r.kind == kind]

    def identifiers(self, kind: str, id_kind: str) -> list[str]:
        """Every value of identifier kind ``id_kind`` the demo knows of the people of its ``kind`` requests."""
        return [v for r in self.requests if r.kind == kind for k, v in r.known if k == id_kind]

    def values(self, kind: str) -> list[str]:
        """Every identifier value the demo knows of the people of its ``kind`` requests, and each as typed."""
        return sorted({*self.subjects(kind), *(v for r in self.requests if r.kind == kind for _, v in r.known)})


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
    plan = _plan(rng, [u for u in user_ids if u in active and u in buyers] if requests else [], user_ids, customers)
    by_id = {u["user_id"]: u for u in users}
    emailed = by_id[plan.email_user]["email"] if plan.email_user else None
    # the CRM (a separate random stream: the tables above stay as they were): the person erased by email is a
    # customer too, under a number only the link table ties to them
    crm = random.Random(seed * 7919 + 1)
    linked = {plan.email_customer: f"{emailed.upper()} "} if emailed and plan.email_customer else {}
    rows["customers"] = write(lake / "customers", customers_table(crm, customers, users, linked))

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
        info.requests = _file_requests(info, plan, by_id)
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
identifiers:            # the kinds of identifier a person has here
  user_id: {type: string}
  email: {type: string, normalise: [trim, lower]}
  customer_no: {type: integer}
identity:               # link tables: a request resolves through them to every identifier of the person
  - {path: users, columns: {user_id: user_id, email: email}}
  - {path: customers, columns: {customer_no: customer_no, email: email}}
tables:
  - name: events
    path: events
    subject: user_id
    kind: user_id
    erase: delete
  - name: users
    path: users
    subject: user_id
    kind: user_id
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
    kind: user_id
    erase: anonymise            # analysts keep revenue per day; the buyer becomes a pseudonym
    mask:
      user_id: pseudonymise     # the same pseudonym as in users, so the two still join
  - name: consents
    path: consents
    subject: user_id
    kind: user_id
    erase: retain
    reason: "GDPR Art. 7(1): proof of consent"
  - name: support_tickets
    path: support_tickets
    subject: customer_no        # an integer subject column of its own kind: a user id never matches here
    kind: customer_no
    erase: anonymise
    mask:
      customer_no: pseudonymise
      body: {redact: "[erased]"}
  - name: customers
    path: customers
    subject: customer_no
    kind: customer_no
    erase: delete
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


@dataclass(frozen=True)
class _Plan:
    """Who the demo's requests are for: five erasures (one filed by email, whose support tickets go through the
    customer number the CRM links to that email), three exports (one user asks for both), one customer number."""

    erase_users: tuple[str, ...] = ()
    export_only: tuple[str, ...] = ()
    both: str | None = None
    customer: int | None = None
    email_user: str | None = None
    email_customer: int | None = None


def _plan(rng: random.Random, candidates: list[str], user_ids: list[str], customers: list[int]) -> _Plan:
    """The people of the requests (the same draws from ``rng``, in the same order, as ever)."""
    if not candidates and not user_ids:
        return _Plan()
    picked = rng.sample(candidates if len(candidates) >= 7 else user_ids, 7)
    customer = rng.choice(customers)
    others = [c for c in customers if c != customer]
    return _Plan(tuple(picked[:4]), tuple(picked[4:6]), picked[6], customer, picked[0],
                 others[len(others) // 2] if others else None)


def _file_requests(info: DemoInfo, plan: _Plan, users: Mapping[str, Mapping[str, Any]]) -> list[DemoRequest]:
    """Five erasures and three exports (the first as CSV, the others JSON); one user asks for both (the export
    runs first); the first erasure names the person by email, typed in another case."""
    from dsr.core import control
    from dsr.core.policy import load_policy

    assert plan.both is not None and plan.customer is not None
    email = str(users[plan.erase_users[0]]["email"])
    person: dict[str, tuple[tuple[str, str], ...]] = {
        u: (("user_id", u),) for u in [*plan.erase_users, *plan.export_only, plan.both]}
    person[plan.erase_users[0]] = (("email", email), ("user_id", plan.erase_users[0]),
                                   ("customer_no", str(plan.email_customer)))
    entries = (
        [("export", u, "user_id") for u in [*plan.export_only, plan.both]]
        + [("erase", plan.erase_users[0], "email")]
        + [("erase", u, "user_id") for u in [*plan.erase_users[1:], plan.both]]
        + [("erase", str(plan.customer), "customer_no")]
    )
    out = []
    with _environ(info.env):
        policy = load_policy(info.policy_path)
        for n, (kind, who, hint) in enumerate(entries, start=1):
            known = person.get(who, (("customer_no", who),))
            named = dict(known)[hint]
            typed = named.title() if hint == "email" else named  # as a person types it: the kind normalises
            rid, _ = control.submit(policy, kind, ids=[f"{hint}={typed}"], ticket=f"DEMO-{n:03d}",
                                    requested_by="privacy@example.com", export_format="csv" if n == 1 else None)
            out.append(DemoRequest(rid, kind, named, hint, known))
    return out
