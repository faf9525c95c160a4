"""Subject ids: validation of what people type, and matching against a table's subject column type.

A row belongs to subject S when its subject column equals S cast to the column's type; NULL never matches;
an id that cannot be cast to the column's type matches nothing there.
"""

from __future__ import annotations

import re
from typing import Any

from dsr.errors import InputError

__all__ = ["CONTROL_CHARS", "MAX_SUBJECT_LEN", "cast_subject", "check_subject_id", "uncastable_note"]

MAX_SUBJECT_LEN = 256
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_subject_id(value: str, where: str = "subject id") -> str:
    """Return the id unchanged if acceptable, else raise InputError (the message never echoes the id)."""
    if not isinstance(value, str) or value == "":
        raise InputError(f"{where}: empty")
    if value.strip() != value:
        raise InputError(f"{where}: has leading or trailing white space")
    if len(value) > MAX_SUBJECT_LEN:
        raise InputError(f"{where}: longer than {MAX_SUBJECT_LEN} characters ({len(value)})")
    if CONTROL_CHARS.search(value):
        raise InputError(f"{where}: contains a control character")
    return value


_INT_BOUNDS = {8: 2**7, 16: 2**15, 32: 2**31, 64: 2**63}


def cast_subject(subject_id: str, arrow_type: Any) -> Any:
    """The id as a value of the column's type, or None when it cannot be cast (it then matches nothing)."""
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(
        arrow_type
    ):
        return subject_id
    if pa.types.is_integer(arrow_type):
        if not re.fullmatch(r"[+-]?[0-9]+", subject_id):
            return None
        value = int(subject_id)
        bits = arrow_type.bit_width
        if pa.types.is_unsigned_integer(arrow_type):
            return value if 0 <= value < 2**bits else None
        bound = _INT_BOUNDS[bits]
        return value if -bound <= value < bound else None
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return subject_id.encode("utf-8")
    return None


def uncastable_note(column: str) -> str:
    """What a receipt or export document says of a table whose subject column the id cannot be cast to."""
    return f"subject id cannot be cast to the type of {column!r}: nothing can match"
