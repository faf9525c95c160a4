"""What dsr must produce, computed from README's words alone: pseudonyms, masked values, export JSON cells.

Tests build their expectations here, never with the code under test (``dsr.core.masks``, ``dsr.exports``): an
encoding or hashing bug in dsr then fails a test instead of agreeing with itself. Each function is a second,
deliberately plain implementation of one documented rule.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import hmac
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["audit_hash", "cell", "exported", "form", "masked", "month", "multiset", "network_24", "pseudonym", "row",
           "year"]

# README, "Masks": HMAC-SHA256 of the subject id under this domain tag, with the key
DOMAIN = "dsr-lake/pseudonym/v1:"


def pseudonym(key: str | bytes, subject_id: str, kind: str = "string") -> str | int:
    """``psn_`` + 32 hex digits for text; ``-(1 + (first 8 bytes & (2^62-1)))`` for 64-bit integers;
    ``-(1 + (first 4 bytes & (2^30-1)))`` for 32-bit integers."""
    raw = key.encode("utf-8") if isinstance(key, str) else key
    digest = hmac.new(raw, (DOMAIN + subject_id).encode("utf-8"), hashlib.sha256).digest()
    if kind == "string":
        return "psn_" + digest.hex()[:32]
    width, mask = {"int64": (8, 2**62 - 1), "int32": (4, 2**30 - 1)}[kind]
    return -(1 + (int.from_bytes(digest[:width], "big") & mask))


def year(value: dt.date | None) -> dt.date | None:
    """First day of the value's year (a timestamp keeps its type and zone, at midnight)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return dt.datetime(value.year, 1, 1, tzinfo=value.tzinfo)
    return dt.date(value.year, 1, 1)


def month(value: dt.date | None) -> dt.date | None:
    """First day of the value's month (a timestamp keeps its type and zone, at midnight)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, 1, tzinfo=value.tzinfo)
    return dt.date(value.year, value.month, 1)


def network_24(value: str | None) -> str | None:
    """``a.b.c.d`` -> ``a.b.c.0`` (each part 1-3 digits); anything else -> None."""
    if value is None:
        return None
    parts = value.split(".")
    if len(parts) != 4 or not all(p.isdigit() and 1 <= len(p) <= 3 for p in parts):
        return None
    return ".".join([*parts[:3], "0"])


def cell(value: Any) -> Any:
    """One value as an export document holds it: timestamps ISO-8601 (UTC as ``Z``), dates ISO, decimals as
    strings, binary as base64, durations as seconds, non-finite floats as strings, maps and lists element by
    element."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.isoformat()
        utc = value.astimezone(dt.UTC).replace(tzinfo=None)
        return utc.isoformat() + "Z"
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return base64.standard_b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): cell(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cell(v) for v in value]
    raise TypeError(f"no documented export form for {type(value).__name__}")


def row(values: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """A table row as its export document holds it, minus the ``drop`` (never-export) columns."""
    dropped = set(drop)
    return {k: cell(v) for k, v in values.items() if k not in dropped}


def multiset(rows: Iterable[Mapping[str, Any]], drop: Iterable[str] = ()) -> Counter[str]:
    """Rows as a multiset of canonical JSON texts: rows compare equal whatever their order. Raw rows are
    turned into their export form first (``cell``); export rows are already in it."""
    dropped = tuple(drop)
    return Counter(json.dumps(row(r, dropped), sort_keys=True) for r in rows)


def exported(rows: Iterable[Mapping[str, Any]], column: str, kind: str = "subject") -> list[dict[str, Any]]:
    """Rows of an export document (schema_version 2) of a table with one subject column: each must say it was
    found by that column (README: ``_found_by`` = ``[{"column": ..., "kind": ...}]``; a policy without
    ``identifiers`` has the one kind ``subject``). Returns them without ``_found_by``, to compare with the
    table's rows."""
    want = [{"column": column, "kind": kind}]
    out = []
    for r in rows:
        assert r.get("_found_by") == want, f"_found_by {r.get('_found_by')!r}, expected {want!r}"
        out.append({k: v for k, v in r.items() if k != "_found_by"})
    return out


def audit_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """README, "Audit log": sha256 of the previous hash, a newline and the canonical event (its fields as JSON,
    keys sorted, no spaces, UTF-8; ``at`` in UTC with microseconds and ``Z``)."""
    fields = ("seq", "event_id", "at", "event", "request_id", "run_id", "table_name", "details")
    body = {k: event[k] for k in fields}
    if isinstance(body["at"], dt.datetime):
        body["at"] = body["at"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{text}".encode()).hexdigest()


def masked(mask: Any, value: Any, *, key: str | bytes, subject_id: str, kind: str | None = None) -> Any:
    """What a column holds after its mask (``mask.strategy``, and ``mask.value`` for ``redact``), per README's
    "Masks": nullify, redact, pseudonymise (``kind`` names the pseudonym form), year, month, ipv4_24."""
    strategy = mask.strategy
    if strategy == "nullify":
        return None
    if strategy == "redact":
        return mask.value
    if strategy == "pseudonymise":
        return pseudonym(key, subject_id, kind or "string")
    if strategy in ("year", "month"):
        return year(value) if strategy == "year" else month(value)
    if strategy == "ipv4_24":
        return network_24(value)
    raise ValueError(f"README documents no mask {strategy!r}")


def form(arrow_type: Any) -> str | None:
    """The pseudonym form of a column type: ``string`` for text, ``int64``/``int32`` for those integers."""
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "string"
    return {pa.int64(): "int64", pa.int32(): "int32"}.get(arrow_type)

