"""Erase strategies and mask strategies: every fact about each in one place (pure, no I/O).

``Strategy`` is what a table's ``erase:`` says: delete, anonymise or retain. ``MASKS`` is the registry of mask
strategies (a table's ``mask:`` values); each :class:`MaskKind` declares

- which column types it applies to (``check_type``),
- its pure-Python reference (``reference``: the masked value of one cell),
- its SQL expression per engine dialect (``sql``: 'datafusion' for delta-rs, 'spark'),
- the Great Expectations suite that proves it (``suite``, a file in expectations/) and that suite's
  parameters (``params``),
- whether it may mask the subject column (only a mask that leaves no id behind may),
- whether its suite checks the column's ISO text form.

The masks:

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
import enum
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsr.delta.support import DELETE, READ, UPDATE

__all__ = [
    "DIALECTS",
    "MASKS",
    "PSEUDONYM_PREFIX",
    "SUBJECT_DIGEST_PREFIX",
    "Mask",
    "MaskKind",
    "Strategy",
    "apply_mask",
    "check_mask_type",
    "mask_sql",
    "pseudonym",
    "pseudonym_column",
    "pseudonym_kind",
    "subject_digest",
]


class Strategy(enum.StrEnum):
    """What erasure does to a table's rows of the subject."""

    DELETE = "delete"
    ANONYMISE = "anonymise"
    RETAIN = "retain"

    @property
    def operation(self) -> str | None:
        """The Delta operation of this strategy's erase commit: DELETE, UPDATE, or None (retain: no commit)."""
        return {Strategy.DELETE: DELETE, Strategy.ANONYMISE: UPDATE}.get(self)

    @property
    def operations(self) -> tuple[str, ...]:
        """What a table with this strategy asks of the reader and the engine (the protocol gate): always a
        read (export, planning, verification), then its erase commit's operation."""
        return (READ,) if self.operation is None else (READ, self.operation)


DIALECTS = ("datafusion", "spark")
PSEUDONYM_PREFIX = "psn_"
_DOMAIN = b"dsr-lake/pseudonym/v1:"
_IPV4 = re.compile(r"^([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})\.[0-9]{1,3}$")


@dataclass(frozen=True)
class Mask:
    """One column's mask: a strategy (a key of ``MASKS``), and for ``redact`` the constant that replaces the value."""

    strategy: str
    value: str | None = None

    @property
    def kind(self) -> MaskKind:
        return MASKS[self.strategy]


# --- pseudonyms ------------------------------------------------------------------------------------------------


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


SUBJECT_DIGEST_PREFIX = "sbj_"


def subject_digest(key: bytes, subject_id: str) -> str:
    """What the control table keeps of a purged erasure's subject id: ``sbj_`` + 32 hex digits of a keyed HMAC
    (its own domain, so it never equals a pseudonym). Enough to dedupe and to re-apply the erasure to rows
    that carry the id later; not the id."""
    d = hmac.new(key, b"dsr-lake/subject/v1:" + subject_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return SUBJECT_DIGEST_PREFIX + d[:32]


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


# --- the registry ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskKind:
    """Everything about one mask strategy."""

    name: str
    suite: str
    masks_subject: bool
    checked_as_text: bool
    check_type: Callable[[Mask, Any], str | None]
    reference: Callable[[Mask, Any, bytes, str, str | None], Any]
    sql: Callable[[Mask, str, Any, str, str], str]
    params: Callable[[Mask, Sequence[str | int]], dict[str, Any]]


def _literal(text: str, dialect: str) -> str:
    escaped = text.replace("'", "''")
    if dialect == "spark":
        escaped = escaped.replace("\\", "\\\\")
    return f"'{escaped}'"


def _is_text(field: Any) -> bool:
    return pseudonym_kind(field.type) == "string"


def _nullify_type(mask: Mask, field: Any) -> str | None:
    return None if field.nullable else "the column is NOT NULL, so it cannot be nullified (use redact or pseudonymise)"


def _text_only(mask: Mask, field: Any) -> str | None:
    return None if _is_text(field) else f"{mask.strategy} works on text columns, not {field.type}"


def _pseudonymise_type(mask: Mask, field: Any) -> str | None:
    t = field.type
    return None if pseudonym_kind(t) else f"pseudonymise works on text and 32/64-bit integer columns, not {t}"


def _date_type(mask: Mask, field: Any) -> str | None:
    import pyarrow as pa

    t = field.type
    ok = pa.types.is_date32(t) or pa.types.is_timestamp(t)
    return None if ok else f"{mask.strategy} works on date and timestamp columns, not {t}"


def _pseudonymise_ref(mask: Mask, value: Any, key: bytes, subject_id: str, kind: str | None) -> Any:
    if kind is None:
        raise ValueError("pseudonymise needs the column's pseudonym kind")
    return pseudonym(key, subject_id, kind)


def _truncate_ref(mask: Mask, value: Any, key: bytes, subject_id: str, kind: str | None) -> Any:
    if value is None:
        return None
    month = 1 if mask.strategy == "year" else value.month
    if isinstance(value, dt.datetime):
        return value.replace(month=month, day=1, hour=0, minute=0, second=0, microsecond=0)
    return dt.date(value.year, month, 1)


def _ipv4_ref(mask: Mask, value: Any, key: bytes, subject_id: str, kind: str | None) -> Any:
    if value is None:
        return None
    m = _IPV4.match(value)
    return f"{m.group(1)}.0" if m else None


def _pseudonymise_sql(mask: Mask, col: str, field: Any, dialect: str, source: str) -> str:
    kind = pseudonym_kind(field.type)
    if kind is None:
        raise ValueError(f"pseudonymise cannot apply to {field.type}")
    return f"{source}.{pseudonym_column(kind)}"


def _truncate_sql(mask: Mask, col: str, field: Any, dialect: str, source: str) -> str:
    import pyarrow as pa

    unit = mask.strategy
    if pa.types.is_date32(field.type):
        return f"trunc({col}, '{unit}')" if dialect == "spark" else f"CAST(date_trunc('{unit}', {col}) AS DATE)"
    return f"date_trunc('{unit}', {col})"


def _ipv4_sql(mask: Mask, col: str, field: Any, dialect: str, source: str) -> str:
    octet = "[0-9]{1,3}"
    full = f"'^{octet}[.]{octet}[.]{octet}[.]{octet}$'"
    repl = f"regexp_replace({col}, '[.]{octet}$', '.0')"
    test = f"{col} RLIKE {full}" if dialect == "spark" else f"regexp_like({col}, {full})"
    return f"CASE WHEN {test} THEN {repl} ELSE NULL END"


def _no_params(mask: Mask, pseudonyms: Sequence[str | int]) -> dict[str, Any]:
    return {}


MASKS: Mapping[str, MaskKind] = {
    kind.name: kind for kind in (
        MaskKind("nullify", "dsr_mask_nullify", masks_subject=True, checked_as_text=False,
                 check_type=_nullify_type, reference=lambda m, v, k, s, kind: None,
                 sql=lambda m, c, f, d, src: "NULL", params=_no_params),
        MaskKind("redact", "dsr_mask_redact", masks_subject=False, checked_as_text=False,
                 check_type=_text_only, reference=lambda m, v, k, s, kind: m.value,
                 sql=lambda m, c, f, d, src: _literal(m.value or "", d),
                 params=lambda m, p: {"redact_values": [m.value]}),
        MaskKind("pseudonymise", "dsr_mask_pseudonymise", masks_subject=True, checked_as_text=False,
                 check_type=_pseudonymise_type, reference=_pseudonymise_ref, sql=_pseudonymise_sql,
                 params=lambda m, p: {"pseudonyms": list(p)}),
        MaskKind("year", "dsr_mask_year", masks_subject=False, checked_as_text=True,
                 check_type=_date_type, reference=_truncate_ref, sql=_truncate_sql, params=_no_params),
        MaskKind("month", "dsr_mask_month", masks_subject=False, checked_as_text=True,
                 check_type=_date_type, reference=_truncate_ref, sql=_truncate_sql, params=_no_params),
        MaskKind("ipv4_24", "dsr_mask_ipv4_24", masks_subject=False, checked_as_text=True,
                 check_type=_text_only, reference=_ipv4_ref, sql=_ipv4_sql, params=_no_params),
    )
}
"""Every mask strategy, by its name in the policy."""


# --- through the registry --------------------------------------------------------------------------------------


def check_mask_type(mask: Mask, field: Any) -> str | None:
    """Why this mask cannot apply to this pyarrow field, or None when it can."""
    kind = MASKS.get(mask.strategy)
    return f"unknown mask {mask.strategy!r}" if kind is None else kind.check_type(mask, field)


def apply_mask(mask: Mask, value: Any, *, key: bytes, subject_id: str, kind: str | None = None) -> Any:
    """Reference implementation: the masked value of one cell. ``kind`` is the pseudonym form."""
    if mask.strategy not in MASKS:
        raise ValueError(f"unknown mask {mask.strategy!r}")
    return mask.kind.reference(mask, value, key, subject_id, kind)


def mask_sql(mask: Mask, column: str, field: Any, dialect: str, *, target: str = "t", source: str = "s") -> str:
    """The SQL expression that computes the mask for ``target.column`` in a MERGE update.

    ``dialect`` is 'datafusion' (delta-rs) or 'spark'. Pseudonyms come from the source's pseudonym column.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    if mask.strategy not in MASKS:
        raise ValueError(f"unknown mask {mask.strategy!r}")
    col = f"{target}.`{column}`" if dialect == "spark" else f'{target}."{column}"'
    return mask.kind.sql(mask, col, field, dialect, source)
