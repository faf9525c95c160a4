"""Mask strategies: a pure-Python reference for each, and the SQL expression per engine dialect.

Strategies (policy ``mask:`` values):

- ``nullify``: NULL. Only on nullable columns.
- ``redact``: a constant text, ``{redact: "[erased]"}`` (plain ``redact`` means ``"[erased]"``). Text columns.
- ``pseudonymise``: keyed HMAC-SHA256 of the subject id (never of the cell), so the same subject gets the
  same pseudonym in every table, column, run and engine with the same key. Type-preserving:
  * text columns: ``"psn_"`` + the first 32 hex digits of the HMAC;
  * 64-bit integers: ``-(1 + (first 8 bytes of the HMAC as unsigned big-endian & (2**62 - 1))``;
  * 32-bit integers: ``-(1 + (first 4 bytes as unsigned big-endian & (2**30 - 1))``.
  Integer pseudonyms are negative, so they never collide with the positive ids of real people.
- ``year`` / ``month``: a date or timestamp generalised to the first day of its year / month (in UTC).
- ``ipv4_24``: ``a.b.c.d`` -> ``a.b.c.0``; anything that is not a dotted IPv4 address becomes NULL.

Pseudonyms are computed here in Python for the small set of erased subjects and handed to the engines as a
column of the MERGE source, so both engines write identical values without the key ever reaching SQL text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from typing import Any

from dsr.policy import Mask

__all__ = [
    "PSEUDONYM_PREFIX",
    "apply_mask",
    "check_mask_type",
    "mask_sql",
    "pseudonym",
    "pseudonym_column",
    "pseudonym_kind",
]

PSEUDONYM_PREFIX = "psn_"
_DOMAIN = b"dsr-lake/pseudonym/v1:"
_IPV4 = re.compile(r"^([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})\.[0-9]{1,3}$")


def _digest(key: bytes, subject_id: str) -> bytes:
    return hmac.new(key, _DOMAIN + subject_id.encode("utf-8"), hashlib.sha256).digest()


def pseudonym(key: bytes, subject_id: str, kind: str) -> str | int:
    """The pseudonym of a subject id, in the form for ``kind`` ('string', 'int64' or 'int32')."""
    d = _digest(key, subject_id)
    if kind == "string":
        return PSEUDONYM_PREFIX + d.hex()[:32]
    if kind == "int64":
        return -(1 + (int.from_bytes(d[:8], "big") & (2**62 - 1)))
    if kind == "int32":
        return -(1 + (int.from_bytes(d[:4], "big") & (2**30 - 1)))
    raise ValueError(f"no pseudonym form for {kind!r}")


def pseudonym_kind(arrow_type: Any) -> str | None:
    """'string', 'int64', 'int32' for the column types pseudonymise supports, else None."""
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(
        arrow_type
    ):
        return "string"
    if pa.types.is_int64(arrow_type):
        return "int64"
    if pa.types.is_int32(arrow_type):
        return "int32"
    return None


def pseudonym_column(kind: str) -> str:
    """Name of the MERGE source column that carries pseudonyms of this kind."""
    return f"__dsr_psn_{kind}"


def check_mask_type(mask: Mask, field: Any) -> str | None:
    """Why this mask cannot apply to this pyarrow field, or None when it can."""
    import pyarrow as pa

    t = field.type
    is_text = pseudonym_kind(t) == "string"
    if mask.strategy == "nullify":
        if not field.nullable:
            return "the column is NOT NULL, so it cannot be nullified (use redact or pseudonymise)"
        return None
    if mask.strategy == "pseudonymise":
        return None if pseudonym_kind(t) else f"pseudonymise works on text and 32/64-bit integer columns, not {t}"
    if mask.strategy in ("redact", "ipv4_24"):
        return None if is_text else f"{mask.strategy} works on text columns, not {t}"
    if mask.strategy in ("year", "month"):
        ok = pa.types.is_date32(t) or pa.types.is_timestamp(t)
        return None if ok else f"{mask.strategy} works on date and timestamp columns, not {t}"
    return f"unknown mask {mask.strategy!r}"


def apply_mask(mask: Mask, value: Any, *, key: bytes, subject_id: str, kind: str | None = None) -> Any:
    """Reference implementation: the masked value of one cell. ``kind`` is the pseudonym form."""
    s = mask.strategy
    if s == "nullify":
        return None
    if s == "redact":
        return mask.value
    if s == "pseudonymise":
        if kind is None:
            raise ValueError("pseudonymise needs the column's pseudonym kind")
        return pseudonym(key, subject_id, kind)
    if value is None:
        return None
    if s in ("year", "month"):
        month = 1 if s == "year" else value.month
        if isinstance(value, dt.datetime):
            return value.replace(month=month, day=1, hour=0, minute=0, second=0, microsecond=0)
        return dt.date(value.year, month, 1)
    if s == "ipv4_24":
        m = _IPV4.match(value)
        return f"{m.group(1)}.0" if m else None
    raise ValueError(f"unknown mask {s!r}")


def _literal(text: str, dialect: str) -> str:
    escaped = text.replace("'", "''")
    if dialect == "spark":
        escaped = escaped.replace("\\", "\\\\")
    return f"'{escaped}'"


def mask_sql(mask: Mask, column: str, field: Any, dialect: str, *, target: str = "t", source: str = "s") -> str:
    """The SQL expression that computes the mask for ``target.column`` in a MERGE update.

    ``dialect`` is 'datafusion' (delta-rs) or 'spark'. Pseudonyms come from the source's pseudonym column.
    """
    import pyarrow as pa

    if dialect not in ("datafusion", "spark"):
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    col = f"{target}.`{column}`" if dialect == "spark" else f'{target}."{column}"'
    s = mask.strategy
    if s == "nullify":
        return "NULL"
    if s == "redact":
        return _literal(mask.value or "", dialect)
    if s == "pseudonymise":
        kind = pseudonym_kind(field.type)
        if kind is None:
            raise ValueError(f"pseudonymise cannot apply to {field.type}")
        return f"{source}.{pseudonym_column(kind)}"
    if s in ("year", "month"):
        if pa.types.is_date32(field.type):
            if dialect == "spark":
                return f"trunc({col}, '{s}')"
            return f"CAST(date_trunc('{s}', {col}) AS DATE)"
        return f"date_trunc('{s}', {col})"
    if s == "ipv4_24":
        octet = "[0-9]{1,3}"
        full = f"'^{octet}[.]{octet}[.]{octet}[.]{octet}$'"
        repl = f"regexp_replace({col}, '[.]{octet}$', '.0')"
        test = f"{col} RLIKE {full}" if dialect == "spark" else f"regexp_like({col}, {full})"
        return f"CASE WHEN {test} THEN {repl} ELSE NULL END"
    raise ValueError(f"unknown mask {s!r}")
