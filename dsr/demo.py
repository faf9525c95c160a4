"""The demo: a generated lake, a policy, a pseudonym key and a few requests, then the Airflow DAG end to end.

``build_demo_lake`` writes everything under one directory and returns a ``DemoInfo``; it is deterministic for
a seed (seeded ``random``, fixed dates) except for the pseudonym key, which is random unless given.
``run_demo`` (``dsr demo``) rebuilds the directory, runs ``airflow db migrate`` on a throw-away
AIRFLOW_HOME inside it and ``airflow dags test dsr_process``, then prints a summary.

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
import queue
import random
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = [
    "DEMO_MARKER",
    "DemoInfo",
    "DemoRequest",
    "airflow_env",
    "airflow_texts",
    "build_demo_lake",
    "run_demo",
    "subject_id_leaks",
]

DEMO_MARKER = ".dsr-demo"
"""A file in every demo directory: ``run_demo`` only wipes a directory that holds it (or is empty)."""

DAG_ID = "dsr_process"
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
    from dsr import control
    from dsr.policy import load_policy

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


# --- dsr demo ----------------------------------------------------------------------------------------------


def _say(msg: str) -> None:
    print(msg, flush=True)


def _prepare_dir(root: Path) -> None:
    from dsr.errors import InputError

    if root.exists():
        if not root.is_dir():
            raise InputError(f"demo: {root} exists and is not a directory")
        if any(root.iterdir()) and not (root / DEMO_MARKER).exists():
            raise InputError(f"demo: {root} is not empty and is not a dsr demo directory; pick another --dir")
        shutil.rmtree(root)
    root.mkdir(parents=True)


def dags_folder() -> Path:
    """The repository's dags/ folder (next to the dsr package in a source checkout)."""
    return Path(__file__).resolve().parent.parent / "dags"


def airflow_env(airflow_home: str | os.PathLike[str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for airflow subprocesses on a throw-away AIRFLOW_HOME (SQLite, no examples)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
    })
    env.update(extra or {})
    return env


def airflow_bin() -> str:
    """The ``airflow`` executable of this interpreter's environment."""
    path = Path(sys.executable).parent / "airflow"
    return str(path) if path.exists() else (shutil.which("airflow") or str(path))


class _Progress:
    """Turns ``airflow dags test`` output into short 'task[i] -> state' lines (None for noise)."""

    _START = re.compile(r"\[DAG TEST\] starting task_id=(\w+) map_index=(-?\d+)")
    _STATE = re.compile(r"new_state=(\w+)")
    _RUN = re.compile(r"DagRun Finished: .*?state=(\w+)")
    _ERROR = re.compile(r"\[(error|critical)\s*\]\s*(.*?)\s+\[")

    def __init__(self) -> None:
        self.task = ""

    def feed(self, line: str) -> str | None:
        text = re.sub(r"\x1b\[[0-9;]*m", "", line)
        m = self._START.search(text)
        if m:
            self.task = m.group(1) + (f"[{m.group(2)}]" if m.group(2) != "-1" else "")
            return None
        m = self._STATE.search(text)
        if m and self.task:
            return f"{self.task:20} {m.group(1)}"
        m = self._RUN.search(text)
        if m:
            return f"DAG run {m.group(1)}"
        m = self._ERROR.search(text)
        if m:
            return f"{self.task or 'airflow':20} error: {m.group(2)[:160]}"
        return None


def _stream(cmd: list[str], env: Mapping[str, str], log_path: Path, *, heartbeat: float = 10.0) -> int:
    """Run cmd with its output in log_path; show task-state lines, and a heartbeat when quiet."""
    lines: queue.Queue[str | None] = queue.Queue()
    proc = subprocess.Popen(
        cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        errors="replace",
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    progress = _Progress()
    started = last = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                log.write(line)
                shown = progress.feed(line)
                if shown:
                    _say(f"      {time.monotonic() - started:5.0f}s  {shown}")
                    last = time.monotonic()
            if time.monotonic() - last >= heartbeat:
                _say(f"      {time.monotonic() - started:5.0f}s  ... (working on {progress.task or 'start-up'})")
                last = time.monotonic()
    return proc.wait()


def run_demo(dir: str) -> int:
    """``dsr demo``: rebuild DIR, run the DAG on it with Airflow, print a summary. 0 when all went well."""
    root = Path(dir).resolve()
    t0 = time.monotonic()
    dag_file = dags_folder() / f"{DAG_ID}.py"
    if not dag_file.exists() or not Path(airflow_bin()).exists():
        print(f"dsr demo: needs the DAG file {dag_file} (a source checkout) and Airflow installed next to "
              f"{sys.executable} (pip install -e '.[airflow]', or simply `make demo`)", file=sys.stderr)
        return 2
    _say(f"[1/5] building the demo lake in {root} ...")
    _prepare_dir(root)
    info = build_demo_lake(root)
    for name, n in info.rows.items():
        _say(f"      {name:16} {n:>7,} rows")
    os.environ.update(info.env)

    _say(f"[2/5] filed {len(info.requests)} requests (policy {info.policy_path}):")
    for r in info.requests:
        _say(f"      {r.request_id}  {r.kind:6}  ({r.table_hint})")

    _say("[3/5] preparing a throw-away Airflow (SQLite) ...")
    home = root / "airflow"
    home.mkdir()
    env = airflow_env(home, {**info.env, "DSR_ENGINE": "delta-rs"})
    migrate = subprocess.run(
        [airflow_bin(), "db", "migrate"], env=env, capture_output=True, text=True, errors="replace",
    )
    (home / "db-migrate.log").write_text(migrate.stdout + migrate.stderr, encoding="utf-8")
    if migrate.returncode != 0:
        print(f"dsr demo: `airflow db migrate` failed (exit {migrate.returncode}); see {home / 'db-migrate.log'}",
              file=sys.stderr)
        return 1

    _say(f"[4/5] airflow dags test {DAG_ID} (output in {home / 'dags-test.log'}) ...")
    rc = _stream([airflow_bin(), "dags", "test", DAG_ID], env, home / "dags-test.log")
    _say(f"      airflow exited with {rc}")

    _say("[5/5] summary")
    ok = _summary(info) and rc == 0
    leaks = subject_id_leaks(info.subjects("erase") + info.subjects("export"), airflow_texts(home))
    if leaks:
        ok = False
        _say(f"  subject ids FOUND in: {', '.join(leaks)}")
    else:
        _say("  no subject id in the Airflow output, task logs or XCom table")
    dsr = _shown_path(str(Path(sys.executable).parent / "dsr"))
    _say(f"\n{'demo OK' if ok else 'demo FAILED'} in {time.monotonic() - t0:.0f}s. Look around:")
    _say(f"  source {_shown_path(info.env_path)}")
    _say(f"  {dsr} requests; {dsr} receipt REQUEST_ID; {dsr} verify; {dsr} audit verify")
    return 0 if ok else 1


def airflow_texts(airflow_home: str | os.PathLike[str]) -> dict[str, str]:
    """Every text Airflow kept of a run: output files and task logs under AIRFLOW_HOME, and the XCom table."""
    import sqlite3

    home = Path(airflow_home)
    texts = {
        str(p.relative_to(home)): p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(home.rglob("*")) if p.is_file() and p.suffix in (".log", ".json", ".txt", "")
    }
    db = home / "airflow.db"
    if db.exists():
        with sqlite3.connect(db) as con:
            rows = con.execute("SELECT dag_id, run_id, task_id, map_index, key, CAST(value AS TEXT) FROM xcom")
            texts["xcom table"] = "\n".join("\t".join(map(str, row)) for row in rows)
    return texts


def subject_id_leaks(subjects: list[str], texts: Mapping[str, str]) -> list[str]:
    """Names of the texts holding any of the subject ids (as a whole token: not inside a longer number)."""
    pattern = re.compile(
        r"(?<![\w.])(?:" + "|".join(re.escape(s) for s in sorted(set(subjects), key=len, reverse=True)) + r")(?!\w)"
    )
    return [name for name, text in texts.items() if subjects and pattern.search(text)]


def _summary(info: DemoInfo) -> bool:
    from dsr import audit, control
    from dsr.policy import load_policy

    policy = load_policy(info.policy_path)
    reqs = control.list_requests(policy)
    ok = bool(reqs)
    _say("  requests")
    for r in reqs:
        ok = ok and r.status == "completed"
        _say(f"    {r.request_id}  {r.kind:6} {r.status:9}  {r.ticket or '-':9} {_request_line(r.result_json())}")
        if r.error:
            _say(f"      error: {r.error.splitlines()[0][:200]}")
    _say("  tables (this run's erasures)")
    for line in _table_lines(policy, [r.result_json() for r in reqs if r.kind == "erase"]):
        _say(f"    {line}")
    n, brk = audit.verify_chain(policy)
    if brk is None:
        _say(f"  audit chain OK ({n} events)")
    else:
        ok = False
        _say(f"  audit chain BROKEN at event {brk.seq}: {brk.why}")
    return ok


def _shown_path(path: str) -> str:
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:
        return path


def _request_line(result: Mapping[str, Any]) -> str:
    """One line for one request's result (as written by dsr.pipeline)."""
    tables = result.get("tables") or {}
    if result.get("kind") == "export":
        rows = sum(int(n or 0) for n in tables.values())
        where = f" -> {_shown_path(result['export_uri'])}" if result.get("export_uri") else ""
        return f"{rows} row(s) from {len(tables)} table(s){where}"
    groups: dict[str, list[str]] = {"delete": [], "anonymise": [], "retain": []}
    ge: list[bool] = []
    for name, t in tables.items():
        strategy = t.get("strategy", "?")
        groups.setdefault(strategy, []).append(name if strategy == "retain" else f"{name} {t.get('rows', 0)}")
        if t.get("ge_success") is not None:
            ge.append(bool(t["ge_success"]))
    labels = {"delete": "deleted", "anonymise": "anonymised", "retain": "retained"}
    parts = [f"{labels.get(k, k)}: {', '.join(v)}" for k, v in groups.items() if v]
    if ge:
        parts.append(f"GE {'passed' if all(ge) else 'FAILED'}")
    return " | ".join(parts)


def _table_lines(policy: Any, results: list[Mapping[str, Any]]) -> list[str]:
    """Per policy table: strategy, rows affected by all erasures, Delta versions, GE outcome."""
    out = []
    for t in policy.tables:
        entries = [r["tables"][t.name] for r in results if t.name in (r.get("tables") or {})]
        if t.erase == "retain":
            out.append(f"{t.name:16} {t.erase:9}  rows kept: {t.reason}")
            continue
        if not entries:
            out.append(f"{t.name:16} {t.erase:9}  not erased in this run")
            continue
        rows = sum(int(e.get("rows") or 0) for e in entries)
        versions = sorted({(e.get("version_before"), e.get("version_after")) for e in entries} - {(None, None)})
        ver = ", ".join(f"v{b} -> v{a}" for b, a in versions if b != a) or "no commit"
        ge = [e.get("ge_success") for e in entries if e.get("ge_success") is not None]
        verdict = "GE passed" if ge and all(ge) else ("GE FAILED" if ge else "GE not run")
        verb = "deleted" if t.erase == "delete" else "anonymised"
        out.append(f"{t.name:16} {t.erase:9}  {rows:>5} row(s) {verb:10}  Delta {ver:12}  {verdict}")
    return out
