"""The tests' one lake builder: real Delta lakes in a scratch folder, with their policy and environment.

Four shapes, one :class:`Lake`:

* :func:`small` -- events (delete), users (anonymise), consents (retain), geo_lookup (not personal), a few rows
  each, subjects ``u1``/``u2``; for policy, intake, CLI and bad-input tests.
* :func:`busy` -- partitioned events over several files, 40 users, orders keyed by an integer ``user_no``,
  consents, geo_lookup; subjects are numeric strings (``"1001"``..``"1040"``) so one id matches a text and an
  integer column alike, and ``"x-77"`` cannot be cast to the integer one. For runs, engines and DAGs.
* :func:`people` -- identifier kinds (user_id, a normalised email): messages with a sender and a recipient
  column, contacts keyed by email; for a person known by several identifiers.
* :func:`around` -- one Delta table dsr did not write (see ``tests/real_tables.py``), copied in, with a policy
  for one strategy.

Reading back (:func:`rows`, :func:`snapshot`, :func:`version`, :func:`files`) goes through deltalake directly,
not through dsr's access layer, so a test's expectation never comes from the code under test.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import random
import shutil
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dsr.core.policy import Policy
    from tests.real_tables import Case

KEY_ENV = "DSR_PSEUDONYM_KEY"
KEY = "test-pseudonym-key-0123456789"

SUBJECTS = [str(1001 + i) for i in range(40)]
ERASE = ["1003", "1007", "1011", "1020", "x-77"]
EXPORT = ["1003", "1005", "1030"]

_HEAD = """\
lake: ./lake
exports: ./exports
pseudonym_key_env: DSR_PSEUDONYM_KEY
"""
_EVENTS = """\
  - name: events
    path: events
    subject: user_id
    erase: delete
"""


def _users_table(extra_masks: str = "") -> str:
    return f"""\
  - name: users
    path: users
    subject: user_id
    erase: anonymise
    mask:
      user_id: pseudonymise
      email: nullify
      full_name: {{redact: "[erased]"}}
      birth_date: year
{extra_masks}      last_ip: ipv4_24
    never_export: [password_hash]
"""


_CONSENTS = """\
  - name: consents
    path: consents
    subject: user_id
    erase: retain
    reason: "GDPR Art. 7(1): proof of consent"
"""

SMALL_POLICY = _HEAD + "tables:\n" + _EVENTS + _users_table() + _CONSENTS

# A policy for control-table and audit tests: intake needs no lake tables.
INTAKE_POLICY = """\
lake: ./lake
exports: ./exports
tables:
  - name: events
    path: events
    subject: user_id
    erase: delete
"""

BUSY_POLICY = (
    _HEAD + "export_before_erase: true\ntables:\n" + _EVENTS + _users_table("      signup_at: month\n")
    + "  - name: orders\n    path: sales/orders\n    subject: user_no\n    erase: delete\n" + _CONSENTS
    + 'exempt:\n  - {path: geo_lookup, reason: "no personal data"}\n'
)


@dataclass
class Lake:
    """A folder with ``lake/`` (the Delta tables), ``dsr.yml`` and, once a run exported, ``exports/``; ``env``
    is what the ``dsr`` command needs (the key and ``DSR_POLICY``)."""

    root: Path
    policy_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def policy(self) -> Policy:
        """The policy, loaded and checked against the lake (as ``dsr run`` does)."""
        from dsr.core.policy import check_against_lake, load_policy

        policy = load_policy(self.policy_path)
        check_against_lake(policy)
        return policy

    def use(self, monkeypatch: pytest.MonkeyPatch) -> Lake:
        """Put ``env`` into this test's environment; returns the lake."""
        for k, v in self.env.items():
            monkeypatch.setenv(k, v)
        return self

    def process_env(self) -> dict[str, str]:
        """This process's environment plus ``env``: for a subprocess."""
        return {**os.environ, **self.env}


class _Root:
    """A remote lake root that joins with ``/`` like a Path."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")

    def __truediv__(self, part: str) -> _Root:
        return _Root(f"{self.uri}/{part}")

    def __str__(self) -> str:
        return self.uri


# --- writing ----------------------------------------------------------------------------------------------


def write_table(path: Path | str | _Root, data: Mapping[str, Any] | Any, *, schema: Any = None,
                **options: Any) -> Path:
    """Append to a Delta table (created if missing): ``data`` maps column names to lists, or is a pyarrow
    table; ``options`` go to ``write_deltalake`` (``partition_by``, ``mode``...)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from dsr.delta import storage

    if isinstance(data, Mapping):
        data = pa.table(dict(data), schema=schema) if schema is not None else pa.table(dict(data))
    uri = str(path)
    options.setdefault("mode", "append")
    write_deltalake(uri, data, storage_options=storage.storage_options(uri), **options)
    return Path(uri)


def write_policy(root: Path, text: str, name: str = "dsr.yml") -> Path:
    """Write a policy YAML (dedented) into root; returns its path."""
    path = root / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _lake(root: Path, policy_text: str, name: str = "dsr.yml") -> Lake:
    policy_path = write_policy(root, policy_text, name)
    return Lake(root=root, policy_path=policy_path, env={KEY_ENV: KEY, "DSR_POLICY": str(policy_path)})


def small(root: Path) -> Lake:
    """events, users, consents (personal, in ``SMALL_POLICY``) and geo_lookup (not personal) under root/lake."""
    import pyarrow as pa

    root.mkdir(parents=True, exist_ok=True)
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
    return _lake(root, SMALL_POLICY)


MESSAGES_POLICY = """\
lake: ./lake
exports: ./exports
identifiers:
  user_id: {type: string}
  email: {type: string, normalise: [trim, lower]}
tables:
  - name: messages
    path: messages
    erase: delete
    subjects:
      - {column: sender_id, kind: user_id}
      - {column: recipient_id, kind: user_id, role: mentioned, mask: {recipient_id: nullify}}
  - {name: contacts, path: contacts, subject: email, kind: email, erase: delete}
"""
"""A policy with identifier kinds: messages has two subject columns (sender: owner; recipient: mentioned),
contacts is keyed by a normalised email."""

MESSAGES = [  # (msg_id, sender_id, recipient_id, body)
    (1, "u1", "u1", "note to self"),  # u1 is sender and recipient
    (2, "u1", "u2", "hi"),  # u1 sends
    (3, "u2", "u1", "re: hi"),  # u1 is only mentioned
    (4, "u3", "u2", "other"),
    (5, "u2", None, "draft"),
]


def messages_lake(root: Path) -> Lake:
    """messages (two subject columns of kind user_id) and contacts (an email in mixed case with a trailing
    blank) under root/lake, with ``MESSAGES_POLICY``: one person is ``user_id=u1`` and ``email=ann@example.org``."""
    root.mkdir(parents=True, exist_ok=True)
    lake = root / "lake"
    write_table(lake / "messages", {name: [m[i] for m in MESSAGES] for i, name in
                                    enumerate(("msg_id", "sender_id", "recipient_id", "body"))})
    write_table(lake / "contacts", {"email": ["Ann@Example.org ", "bob@example.org"], "opt_in": [True, False]})
    return _lake(root, MESSAGES_POLICY)


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


def _users() -> tuple[list[dict[str, Any]], Any]:
    import pyarrow as pa

    users = [{
        "user_id": sid, "email": f"person{i}@example.org", "full_name": f"Person {i}",
        "birth_date": dt.date(1970 + i % 30, 1 + i % 12, 1 + i % 28),
        "signup_at": dt.datetime(2020, 1 + i % 12, 1 + i % 28, i % 24, 7, tzinfo=dt.UTC),
        "last_ip": f"10.{i}.{i * 3 % 256}.{i * 7 % 256}" if i % 9 else "not-an-ip",
        "password_hash": f"hash{i:04d}",
    } for i, sid in enumerate(SUBJECTS)]
    schema = pa.schema([
        pa.field("user_id", pa.string(), nullable=False), pa.field("email", pa.string()),
        pa.field("full_name", pa.string()), pa.field("birth_date", pa.date32()),
        pa.field("signup_at", pa.timestamp("us", tz="UTC")), pa.field("last_ip", pa.string()),
        pa.field("password_hash", pa.string()),
    ])
    return users, schema


def _orders(rng: random.Random) -> tuple[list[dict[str, Any]], Any]:
    import pyarrow as pa

    orders = [{
        "order_id": f"o{i:05d}", "user_no": int(rng.choice(SUBJECTS)) if i % 13 else None,
        "amount": decimal.Decimal(rng.randrange(100, 99999)) / 100,
        "ordered_at": dt.datetime(2025, 1 + i % 12, 1 + i % 28, tzinfo=dt.UTC),
    } for i in range(150)]
    schema = pa.schema([
        pa.field("order_id", pa.string()), pa.field("user_no", pa.int64()),
        pa.field("amount", pa.decimal128(10, 2)), pa.field("ordered_at", pa.timestamp("us", tz="UTC")),
    ])
    return orders, schema


def busy(root: Path, *, seed: int = 11, lake_uri: str | None = None, exports_uri: str | None = None) -> Lake:
    """Write the busy lake and its policy under root (the tables at lake_uri, e.g. s3://bucket/prefix, when
    given; the exports at exports_uri)."""
    import pyarrow as pa

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    lake: Any = _Root(lake_uri) if lake_uri else root / "lake"
    start = 0
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        for _ in range(3):  # several files per partition
            write_table(lake / "events", _events(rng, day, 60, start), partition_by=["event_date"])
            start += 60
    users, schema = _users()
    half = len(users) // 2
    write_table(lake / "users", pa.Table.from_pylist(users[:half], schema=schema))
    write_table(lake / "users", pa.Table.from_pylist(users[half:], schema=schema))
    orders, oschema = _orders(rng)
    for part in range(3):
        write_table(lake / "sales" / "orders", pa.Table.from_pylist(orders[part * 50:(part + 1) * 50], schema=oschema))
    write_table(lake / "consents", {"user_id": pa.array(SUBJECTS, pa.string()),
                                    "purpose": pa.array(["marketing"] * len(SUBJECTS))})
    write_table(lake / "geo_lookup", {"country": ["DE", "FR"], "region": ["EU", "EU"]})
    text = BUSY_POLICY
    if lake_uri:
        text = text.replace("lake: ./lake", f"lake: {lake_uri}")
    if exports_uri:
        text = text.replace("exports: ./exports", f"exports: {exports_uri}")
    return _lake(root, text)


PEOPLE_POLICY = _HEAD + """\
identifiers:
  user_id: {type: string}
  email: {type: string, normalise: [trim, lower]}
  customer_no: {type: integer}
tables:
  - {name: events, path: events, subject: user_id, kind: user_id, erase: delete}
  - name: contacts
    path: contacts
    subject: email
    kind: email
    erase: anonymise
    mask: {email: pseudonymise, full_name: {redact: "[erased]"}}
  - {name: tickets, path: tickets, subject: customer_no, kind: customer_no, erase: delete}
  - name: messages
    path: messages
    erase: delete
    subjects:
      - {column: sender_id, kind: user_id}
      - {column: recipient_id, kind: user_id, role: mentioned, mask: {recipient_id: pseudonymise}}
"""
PERSON_1 = ("user_id=77", "email=Jane@Example.org", "customer_no=1234")
"""The people lake's first person, as ``--id`` texts: user id 77, an email, customer number 1234."""
PERSON_2 = {"user_id": "88", "email": "bob@example.org", "customer_no": 77}
"""The second person: their customer number is the first person's user id, as digits."""


def people_rows(tag: str, *, jane_email: str = "jane@example.org") -> dict[str, dict[str, list[Any]]]:
    """One batch of the people lake's rows (``tag`` marks them): person 1's and person 2's in every table."""
    return {
        "events": {"user_id": ["77", "88", "77"], "page": [f"/{tag}/a", f"/{tag}/b", f"/{tag}/c"]},
        "contacts": {"email": [jane_email, "bob@example.org", "jane@example.org"],
                     "full_name": [f"Jane {tag}", f"Bob {tag}", f"J {tag}"]},
        "tickets": {"customer_no": [1234, 77, 1234], "subject": [f"{tag} refund", f"{tag} login", f"{tag} other"]},
        "messages": {"sender_id": ["77", "88", "88"], "recipient_id": ["88", "77", "99"],
                     "body": [f"{tag} hi bob", f"{tag} hi jane", f"{tag} hi carol"]},
    }


def write_people_rows(lake: Path, rows_by_table: Mapping[str, Mapping[str, list[Any]]]) -> None:
    """Append a batch of :func:`people_rows` (customer numbers as 64-bit integers)."""
    import pyarrow as pa

    for name, data in rows_by_table.items():
        schema = pa.schema([(c, pa.int64() if c == "customer_no" else pa.string()) for c in data])
        write_table(lake / name, data, schema=schema)


def people(root: Path) -> Lake:
    """A lake where a person is known by three kinds of identifier (issue 23): events by ``user_id``, contacts
    by ``email`` (normalised: trim, lower; one row in mixed case with a trailing space), tickets by the integer
    ``customer_no``, messages with a sender (owner) and a recipient (mentioned) of kind ``user_id``. Person 1 is
    user 77, ``jane@example.org``, customer 1234; person 2 (:data:`PERSON_2`) is customer 77."""
    root.mkdir(parents=True, exist_ok=True)
    write_people_rows(root / "lake", people_rows("old", jane_email="Jane@Example.ORG "))
    return _lake(root, PEOPLE_POLICY)


def around(root: Path, case: Case, strategy: str) -> Lake:
    """Copy a real table (a ``tests/real_tables.py`` case) into ``root/lake/<name>`` with a policy that erases
    it by ``strategy`` (delete, anonymise with the case's masks, or retain)."""
    lake = root / "lake"
    lake.mkdir(parents=True, exist_ok=True)
    shutil.copytree(case.source, lake / case.name)
    if strategy == "anonymise":
        masks = "\n".join(f"      {json.dumps(c)}: {m}" for c, m in case.anonymise_masks.items())
        body = f"    erase: anonymise\n    mask:\n{masks}\n"
    else:
        body = f"    erase: {strategy}\n" + ("    reason: \"legal hold\"\n" if strategy == "retain" else "")
    return _lake(root, textwrap.dedent(f"""\
        lake: ./lake
        exports: ./exports
        pseudonym_key_env: {KEY_ENV}
        export_before_erase: true
        tables:
          - name: {case.name}
            path: {case.name}
            subject: {json.dumps(case.subject)}
        """) + body)


def copy(lake: Lake, root: Path) -> Lake:
    """A copy of a local lake (tables, policy, exports) under root: a test that changes it leaves the original
    as it was for the others."""
    shutil.copytree(lake.root, root)
    return Lake(root=root, policy_path=root / lake.policy_path.relative_to(lake.root),
                env={**lake.env, "DSR_POLICY": str(root / lake.policy_path.relative_to(lake.root))})


# --- reading back (deltalake directly, never dsr's access layer) --------------------------------------------


def rows(path: Path | str, version: int | None = None) -> list[dict[str, Any]]:
    """Every row of a Delta table (its current version, or ``version``), through DataFusion SQL: it honours
    column mapping and deletion vectors, which ``to_pyarrow_dataset`` does not."""
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    from dsr.delta import storage

    uri = str(path)
    table = DeltaTable(uri, version=version, storage_options=storage.storage_options(uri))
    batches = QueryBuilder().register("t", table).execute("SELECT * FROM t").read_all()
    return list(pa.table(batches).to_pylist())


def snapshot(path: Path | str) -> list[dict[str, Any]]:
    """Every row of a Delta table's current version, sorted, for value-for-value comparison."""
    return sorted(rows(path), key=lambda r: repr(sorted(r.items())))


def version(path: Path | str) -> int | None:
    """The current version of the Delta table at path, or None when there is none."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(str(path)):
        return None
    return int(DeltaTable(str(path)).version())


def files(*roots: Path) -> dict[str, bytes]:
    """Every file under the roots (path -> bytes; a link -> its target): what a refused command must leave."""
    out: dict[str, bytes] = {}
    for root in roots:
        if root.exists():
            for f in sorted(root.rglob("*")):
                if f.is_symlink():
                    out[str(f)] = b"-> " + str(f.readlink()).encode()
                elif f.is_file():
                    out[str(f)] = f.read_bytes()
    return out


def file_requests(policy: Policy) -> dict[tuple[str, str], str]:
    """File the busy lake's requests (an erasure for each of ``ERASE``, with a ticket; an export for each of
    ``EXPORT``) through the control table; returns (kind, subject id) -> request id."""
    from dsr.core import control

    ids = {("erase", sid): control.submit(policy, "erase", sid, ticket=f"T-{i}")[0] for i, sid in enumerate(ERASE)}
    return ids | {("export", sid): control.submit(policy, "export", sid)[0] for sid in EXPORT}
