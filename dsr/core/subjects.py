"""Subject ids: validation of what people type, and matching against a table's subject column type.

A row belongs to subject S when its subject column equals S cast to the column's type; NULL never matches;
an id that cannot be cast to the column's type matches nothing there.

What people type is refused, with one line that never echoes it, when it holds a character nobody can see or
that changes how the text around it reads: control characters (C0, C1, line and paragraph separators),
invisible characters (zero-width space and joiners, word joiner and invisible operators, BOM, soft hyphen,
Mongolian vowel separator), bidirectional controls (embeddings, overrides, isolates, marks), and lone
surrogates (text that is not valid Unicode and cannot be written as UTF-8).
"""

from __future__ import annotations

import re
from typing import Any

from dsr.errors import InputError

__all__ = [
    "BIDI_CHARS",
    "CONTROL_CHARS",
    "INVISIBLE_CHARS",
    "MAX_SUBJECT_LEN",
    "cast_subject",
    "check_subject_id",
    "check_text",
    "text_problem",
    "uncastable_note",
]

MAX_SUBJECT_LEN = 256
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_C0_C1 = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
# Zero-width space / non-joiner / joiner, word joiner and invisible operators, BOM (zero-width no-break space),
# soft hyphen, Mongolian vowel separator.
_INVISIBLE = r"\u200b-\u200d\u2060-\u2064\ufeff\u00ad\u180e"
# Arabic letter mark, LRM/RLM, embeddings and overrides (LRE RLE PDF LRO RLO), isolates (LRI RLI FSI PDI).
_BIDI = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# Lone surrogates: a str holding them cannot be encoded as UTF-8 (e.g. undecodable bytes from argv).
_SURROGATES = r"\ud800-\udfff"

INVISIBLE_CHARS = re.compile(f"[{_INVISIBLE}]")
BIDI_CHARS = re.compile(f"[{_BIDI}]")
_C0_C1_CHARS = re.compile(f"[{_C0_C1}]")
_SURROGATE_CHARS = re.compile(f"[{_SURROGATES}]")
# Everything refused in typed text (subject ids, tickets, requesters), in one class: a control, invisible or
# bidirectional character, or a lone surrogate.
CONTROL_CHARS = re.compile(f"[{_C0_C1}{_INVISIBLE}{_BIDI}{_SURROGATES}]")


def text_problem(value: str) -> str | None:
    """Why typed text is refused (a phrase that never quotes it), or None when it is acceptable."""
    if _SURROGATE_CHARS.search(value):
        return "is not valid Unicode (it holds a lone surrogate, e.g. bytes that are not UTF-8)"
    if _C0_C1_CHARS.search(value):
        return "contains a control character"
    if BIDI_CHARS.search(value):
        return "contains a bidirectional control character (e.g. U+202E)"
    if INVISIBLE_CHARS.search(value):
        return "contains an invisible character (e.g. a zero-width space, soft hyphen or BOM)"
    return None


def check_text(value: str | None, where: str, *, max_len: int = MAX_SUBJECT_LEN) -> str | None:
    """Free text such as a ticket or requester: None or '' pass; else at most max_len characters and no
    character ``text_problem`` refuses. Raises InputError naming ``where``, never echoing the text."""
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        raise InputError(f"{where}: must be text")
    if len(value) > max_len:
        raise InputError(f"{where}: longer than {max_len} characters ({len(value)})")
    problem = text_problem(value)
    if problem:
        raise InputError(f"{where}: {problem}")
    return value


def check_subject_id(value: str, where: str = "subject id") -> str:
    """Return the id unchanged if acceptable, else raise InputError (the message never echoes the id)."""
    if not isinstance(value, str) or value == "":
        raise InputError(f"{where}: empty")
    if value.strip() != value:
        raise InputError(f"{where}: has leading or trailing white space")
    check_text(value, where)
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
