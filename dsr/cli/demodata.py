"""The demo lake's tables, generated from a seed: users, events, orders, consents, support tickets, geo lookup."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["consents_table", "events_table", "geo_table", "ip_address", "orders_table", "people", "tickets_table",
           "users_table", "write"]

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


def write(uri: Path, table: Any, *, parts: int = 1, partition_by: list[str] | None = None) -> int:
    """Write a pyarrow table as ``parts`` appends (so the table has several files)."""
    from deltalake import write_deltalake

    n = table.num_rows
    step = -(-n // parts)
    for start in range(0, n, step):
        write_deltalake(str(uri), table.slice(start, step), mode="append", partition_by=partition_by)
    return int(n)


def ip_address(rng: random.Random) -> str:
    first = rng.choice((23, 31, 46, 62, 77, 81, 85, 89, 91, 93, 145, 151, 176, 185, 188, 193, 212, 217))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def people(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    taken: set[str] = set()
    for i in range(1, n + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last}".lower().translate(_ASCII)
        if rng.random() < 0.3:
            local += str(rng.randrange(1, 99))
        salt = hashlib.sha256(f"salt{i}:{rng.random()}".encode()).hexdigest()[:16]
        email = f"{local}@{rng.choice(_DOMAINS)}"
        if email in taken:  # two people never share an address: the link table would make them one person
            email = f"{local}.{i}@{email.partition('@')[2]}"
        taken.add(email)
        out.append({
            "user_id": f"u{i:06d}",
            "email": email,
            "full_name": f"{first} {last}",
            "birth_date": dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(56 * 365)),
            "last_ip": ip_address(rng) if rng.random() < 0.95 else None,
            "password_hash": "pbkdf2_sha256$600000$" + salt + "$"
            + hashlib.sha256(f"{salt}{rng.random()}".encode()).hexdigest(),
            "country": rng.choice(_GEO)[0],
            "signed_up_at": dt.datetime(2023, 1, 1, tzinfo=_UTC) + dt.timedelta(seconds=rng.randrange(10**8)),
        })
    return out


def users_table(users: list[dict[str, Any]]) -> Any:
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


def events_table(rng: random.Random, user_ids: list[str], days: list[dt.date], n: int, *, offset: int) -> Any:
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


def orders_table(rng: random.Random, user_ids: list[str], n: int) -> Any:
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


def consents_table(rng: random.Random, user_ids: list[str]) -> Any:
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


def tickets_table(rng: random.Random, n_customers: int, n: int) -> Any:
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


def geo_table() -> Any:
    import pyarrow as pa

    return pa.table({"country": [c for c, _ in _GEO], "region": [r for _, r in _GEO]})



def customers_table(rng: random.Random, customers: list[int], users: list[dict[str, Any]],
                    linked: Mapping[int, str]) -> Any:
    """The CRM's customers: one row per customer number of the tickets, with an email. ``linked``: customer
    numbers whose email is a user's (the demo's person erased by email: their address written in upper case with
    a trailing space, as a CRM may hold it); the others get an address of nobody in ``users``."""
    import pyarrow as pa

    known = {u["email"] for u in users}
    rows = []
    for no in customers:
        email = linked.get(no)
        if email is None:
            email = f"customer{no}@{rng.choice(_DOMAINS)}"
            while email in known:  # never a user's by chance
                email = "x" + email
        rows.append({"customer_no": no, "email": email, "segment": rng.choice(("retail", "business"))})
    schema = pa.schema([pa.field("customer_no", pa.int64(), nullable=False), pa.field("email", pa.string()),
                        pa.field("segment", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)
