"""The demo lake: generated tables, a policy, a pseudonym key and a few requests (``build_demo_lake``).

Deterministic for a seed (seeded ``random``, fixed dates) except for the pseudonym key, which is random unless
given. ``dsr.cli.demo`` runs the Airflow DAG on it.

Layout of DIR::

    dsr.yml          the policy (lake: ./lake, exports: ./exports)
    demo.env         DSR_POLICY and DSR_PSEUDONYM_KEY, to ``source`` before using ``dsr`` on the demo
    lake/            users, events (partitioned by event_date), orders, consents, support_tickets, geo_lookup
    exports/         the export documents (after the run)
    airflow/         the throw-away AIRFLOW_HOME (SQLite metadata DB, task logs)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import secrets
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["DEMO_MARKER", "KEY_ENV", "DemoInfo", "DemoRequest", "build_demo_lake"]

DEMO_MARKER = ".dsr-demo"
"""A file in every demo directory: ``run_demo`` only wipes a directory that holds it (or is empty)."""

KEY_ENV = "DSR_PSEUDONYM_KEY"

_GEO = (
    ("AT", "Europe"), ("BE", "Europe"), ("BR", "South America"), ("CA", "North America"), ("DE", "Europe"),
    ("DK", "Europe"), ("ES", "Europe"), ("FI", "Europe"), ("FR", "Europe"), ("IE", "Europe"),
    ("IN", "Asia"), ("IT", "Europe"), ("JP", "Asia"), ("MX", "North America"), ("NL", "Europe"),
    ("PL", "Europe"), ("PT", "Europe"), ("SE", "Europe"), ("GB", "Europe"), ("US", "North America"),
)
_FIRST = (
    "Anna", "Ben", "Chloé", "David", "Elif", "Fatima", "Georg", "Hanna", "Ingrid", "Jonas", "Kenji", "Lena",
    "Mateo", "Nora", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tomás", "Ugo", "Valentina", "Wiktor",
    "Xin", "Yusuf", "Zoë", "Amélie", "Björn", "Carmen", "Dmitri", "Emma", "François", "Giulia", "Hugo",
    "Isabel", "João", "Karin", "Liam", "Maja", "Noah", "Olivia", "Paul", "Rania", "Sofia", "Theo", "Ulla",
)
_LAST = (
    "Müller", "Schmidt", "García", "Rossi", "Dubois", "Jansen", "Nowak", "Silva", "Andersson", "Nielsen",
    "Kowalski", "Fernández", "Bianchi", "Martin", "de Vries", "Costa", "Johansson", "Virtanen", "O'Brien",
    "Smith", "Tanaka", "Sato", "Singh", "Kaya", "Yılmaz", "Novák", "Horváth", "Papadopoulos", "Ivanova",
    "Lefèvre", "Weiß", "Hoffmann", "Moreau", "Lindqvist", "Murphy", "Walsh", "Hernández", "López", "Berg",
)
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "post.example")
_EVENT_TYPES = ("page_view", "page_view", "page_view", "search", "add_to_cart", "login", "logout", "checkout")
_PAGES = ("/", "/search", "/product/{}", "/cart", "/checkout", "/account", "/help", "/blog/{}")
_PURPOSES = ("marketing_email", "analytics", "personalisation", "third_party_sharing")
_TICKET_TOPICS = ("Delivery late", "Refund request", "Wrong size", "Cannot log in", "Invoice copy", "Damaged item")
_ASCII = str.maketrans({
    "é": "e", "ë": "e", "è": "e", "á": "a", "ó": "o", "ö": "o", "ü": "u", "ß": "ss", "ı": "i", "ç": "c",
    "ã": "a", "í": "i", "ñ": "n", "å": "a", "ä": "a", "ø": "o", "'": "", " ": "",
})
_UTC = dt.UTC
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
    exports.mkdir(exist_ok=True)
    key = key or secrets.token_hex(16)

    rng = random.Random(seed)
    rows: dict[str, int] = {}
    users = _users(rng, max(30, round(2000 * scale)))
    rows["users"] = _write(lake / "users", _users_table(users), parts=2)
    user_ids = [u["user_id"] for u in users]
    days = [_LAST_DAY - dt.timedelta(days=i) for i in range(max(3, min(14, round(14 * scale ** 0.5))) - 1, -1, -1)]
    appends = 4 if scale >= 0.25 else 2
    n_events = max(300, round(40_000 * scale))
    rows["events"] = 0
    active: set[str] = set()
    for part in range(appends):
        batch = _events_table(rng, user_ids, days, n_events // appends, offset=part * (n_events // appends))
        active.update(u for u in batch.column("user_id").to_pylist() if u is not None)
        rows["events"] += _write(lake / "events", batch, partition_by=["event_date"])
    orders = _orders_table(rng, user_ids, max(60, round(6000 * scale)))
    buyers = set(orders.column("user_id").to_pylist())
    rows["orders"] = _write(lake / "orders", orders, parts=2)
    rows["consents"] = _write(lake / "consents", _consents_table(rng, user_ids))
    tickets = _tickets_table(rng, max(20, round(600 * scale)), max(40, round(1500 * scale)))
    customers = sorted(set(tickets.column("customer_no").to_pylist()))
    rows["support_tickets"] = _write(lake / "support_tickets", tickets, parts=2)
    rows["geo_lookup"] = _write(lake / "geo_lookup", _geo_table())

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


def _write(uri: Path, table: Any, *, parts: int = 1, partition_by: list[str] | None = None) -> int:
    """Write a pyarrow table as ``parts`` appends (so the table has several files)."""
    from deltalake import write_deltalake

    n = table.num_rows
    step = -(-n // parts)
    for start in range(0, n, step):
        write_deltalake(str(uri), table.slice(start, step), mode="append", partition_by=partition_by)
    return int(n)


def _ip(rng: random.Random) -> str:
    first = rng.choice((23, 31, 46, 62, 77, 81, 85, 89, 91, 93, 145, 151, 176, 185, 188, 193, 212, 217))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _users(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(1, n + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last}".lower().translate(_ASCII)
        if rng.random() < 0.3:
            local += str(rng.randrange(1, 99))
        salt = hashlib.sha256(f"salt{i}:{rng.random()}".encode()).hexdigest()[:16]
        out.append({
            "user_id": f"u{i:06d}",
            "email": f"{local}@{rng.choice(_DOMAINS)}",
            "full_name": f"{first} {last}",
            "birth_date": dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(56 * 365)),
            "last_ip": _ip(rng) if rng.random() < 0.95 else None,
            "password_hash": "pbkdf2_sha256$600000$" + salt + "$"
            + hashlib.sha256(f"{salt}{rng.random()}".encode()).hexdigest(),
            "country": rng.choice(_GEO)[0],
            "signed_up_at": dt.datetime(2023, 1, 1, tzinfo=_UTC) + dt.timedelta(seconds=rng.randrange(10**8)),
        })
    return out


def _users_table(users: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    schema = pa.schema([
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("email", pa.string()),
        pa.field("full_name", pa.string()),
        pa.field("birth_date", pa.date32()),
        pa.field("last_ip", pa.string()),
        pa.field("password_hash", pa.string()),
        pa.field("country", pa.string()),
        pa.field("signed_up_at", pa.timestamp("us", tz="UTC")),
    ])
    return pa.Table.from_pylist(users, schema=schema)


def _events_table(rng: random.Random, user_ids: list[str], days: list[dt.date], n: int, *, offset: int) -> Any:
    import pyarrow as pa

    # A few heavy users, many light ones; ~4% anonymous events (NULL user_id never matches a subject).
    weights = [1.0 / (1 + (i % 50)) for i in range(len(user_ids))]
    picks = rng.choices(user_ids, weights=weights, k=n)
    names = ("event_id", "user_id", "event_type", "page", "event_ts", "event_date")
    cols: dict[str, list[Any]] = {k: [] for k in names}
    for j, uid in enumerate(picks):
        day = rng.choice(days)
        ts = dt.datetime(day.year, day.month, day.day, tzinfo=_UTC) + dt.timedelta(seconds=rng.randrange(86_400))
        cols["event_id"].append(f"e{offset + j:08d}")
        cols["user_id"].append(None if rng.random() < 0.04 else uid)
        cols["event_type"].append(rng.choice(_EVENT_TYPES))
        cols["page"].append(rng.choice(_PAGES).format(rng.randrange(1, 500)))
        cols["event_ts"].append(ts)
        cols["event_date"].append(day)
    schema = pa.schema([
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("event_type", pa.string()),
        pa.field("page", pa.string()),
        pa.field("event_ts", pa.timestamp("us", tz="UTC")),
        pa.field("event_date", pa.date32()),
    ])
    return pa.table(cols, schema=schema)


def _orders_table(rng: random.Random, user_ids: list[str], n: int) -> Any:
    import pyarrow as pa

    start = dt.datetime(2025, 1, 1, tzinfo=_UTC)
    rows = []
    for i in range(1, n + 1):
        rows.append({
            "order_id": f"o{i:07d}",
            "user_id": rng.choice(user_ids),
            "amount": Decimal(rng.randrange(199, 49_999)) / 100,
            "currency": "EUR",
            "ordered_at": start + dt.timedelta(seconds=rng.randrange(60_000_000)),
        })
    schema = pa.schema([
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("amount", pa.decimal128(10, 2)),
        pa.field("currency", pa.string()),
        pa.field("ordered_at", pa.timestamp("us", tz="UTC")),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def _consents_table(rng: random.Random, user_ids: list[str]) -> Any:
    import pyarrow as pa

    start = dt.datetime(2024, 1, 1, tzinfo=_UTC)
    rows = []
    for uid in user_ids:
        for purpose in rng.sample(_PURPOSES, rng.randrange(0, 4)):
            rows.append({
                "user_id": uid, "purpose": purpose,
                "granted_at": start + dt.timedelta(seconds=rng.randrange(80_000_000)),
            })
    schema = pa.schema([
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("purpose", pa.string(), nullable=False),
        pa.field("granted_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def _tickets_table(rng: random.Random, n_customers: int, n: int) -> Any:
    import pyarrow as pa

    start = dt.datetime(2025, 6, 1, tzinfo=_UTC)
    rows = []
    for i in range(1, n + 1):
        topic = rng.choice(_TICKET_TOPICS)
        rows.append({
            "ticket_id": i,
            "customer_no": 100_000 + rng.randrange(1, n_customers + 1),
            "topic": topic,
            "body": f"{topic}: order o{rng.randrange(1, 10**6):07d}, please call me back on +49 {rng.randrange(10**9)}",
            "opened_at": start + dt.timedelta(seconds=rng.randrange(12_000_000)),
        })
    schema = pa.schema([
        pa.field("ticket_id", pa.int64(), nullable=False),
        pa.field("customer_no", pa.int64()),
        pa.field("topic", pa.string()),
        pa.field("body", pa.string()),
        pa.field("opened_at", pa.timestamp("us", tz="UTC")),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def _geo_table() -> Any:
    import pyarrow as pa

    return pa.table({"country": [c for c, _ in _GEO], "region": [r for _, r in _GEO]})


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
    """Five erasures and three exports; one user asks for both (the export runs first)."""
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
            rid, _ = control.submit(policy, kind, subject, ticket=f"DEMO-{n:03d}", requested_by="privacy@example.com")
            out.append(DemoRequest(rid, kind, subject, hint))
    return out
