"""Tables by catalog name on Spark: the name's grammar, and where the session's catalog says the table lives.

A policy table may give ``table: catalog.schema.table`` (one to three parts) instead of ``path:``. Each part is
a plain identifier (letters, digits and ``_``, not starting with a digit) or back-quoted (`` `my-schema` ``, a
back-quote inside doubled); nothing else (no spaces around the dots, no empty part). :func:`parse_name` is the
only way to a name's parts, and :func:`sql_name` back-quotes every part again, so no text from the policy ever
reaches SQL unchecked. A table name is not personal data.

:func:`locate` asks the session's catalog: ``DESCRIBE DETAIL`` (delta-spark, Databricks: the ``format`` and
``location`` columns), else ``DESCRIBE TABLE EXTENDED`` (its ``Provider`` and ``Location`` rows: Sail, which
has no ``DESCRIBE DETAIL``, and any Spark). The table must be Delta; its location is returned as the catalog
gives it (``file:/...``, a path, ``s3://...``, ``dbfs:/...``): what dsr can read is decided above this layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dsr.engines.spark_sql import quote
from dsr.errors import InputError

__all__ = ["MAX_PARTS", "NAME_RULE", "Located", "catalog_session", "display_name", "locate", "parse_name",
           "sql_name"]

MAX_PARTS = 3
MAX_PART_LEN = 255
NAME_RULE = (
    "one to three parts joined by '.' (catalog.schema.table), each a plain identifier (letters, digits and '_', "
    "not starting with a digit) or back-quoted (`my-schema`; a back-quote inside doubled), no spaces around "
    f"the dots, each at most {MAX_PART_LEN} characters"
)
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_name(text: str) -> tuple[str, ...]:
    """The parts of a catalog table name, or ValueError saying what is wrong (never quoting much of it)."""
    if not isinstance(text, str) or not text:
        raise ValueError("it is empty")
    if _CONTROL.search(text):
        raise ValueError("it contains a control character")
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == "`":
            j, buf = i + 1, []
            while True:
                k = text.find("`", j)
                if k < 0:
                    raise ValueError("a back-quote is not closed")
                buf.append(text[j:k])
                if text.startswith("``", k):  # a doubled back-quote is one back-quote of the name
                    buf.append("`")
                    j = k + 2
                    continue
                i = k + 1
                break
            part = "".join(buf)
            if not part:
                raise ValueError("a back-quoted part is empty")
        else:
            m = _PLAIN.match(text, i)
            if m is None:
                if i >= n or text[i] == ".":
                    raise ValueError(f"part {len(parts) + 1} is empty")
                raise ValueError(f"part {len(parts) + 1} starts with {text[i]!r} (back-quote a part that is not a "
                                 "plain identifier)")
            part, i = m.group(0), m.end()
        if len(part) > MAX_PART_LEN:
            raise ValueError(f"part {len(parts) + 1} is longer than {MAX_PART_LEN} characters")
        parts.append(part)
        if i == n:
            break
        if text[i] != ".":
            raise ValueError(f"{text[i]!r} after part {len(parts)} (parts are joined by '.')")
        i += 1
        if i == n:
            raise ValueError(f"part {len(parts) + 1} is empty")
    if len(parts) > MAX_PARTS:
        raise ValueError(f"it has {len(parts)} parts, at most {MAX_PARTS} (catalog.schema.table)")
    return tuple(parts)


def display_name(parts: tuple[str, ...]) -> str:
    """The name as a person writes it: plain parts as they are, others back-quoted."""
    return ".".join(p if _PLAIN.fullmatch(p) else quote(p) for p in parts)


def sql_name(text: str) -> str:
    """The name for SQL: parsed again, every part back-quoted (InputError when it does not parse)."""
    try:
        parts = parse_name(text)
    except ValueError as exc:
        raise InputError(f"table name is not a catalog name: {exc}") from None
    return ".".join(quote(p) for p in parts)


@dataclass(frozen=True)
class Located:
    """Where the catalog keeps a table, and what it calls its format (``delta``...)."""

    location: str
    format: str
    via: str  # the statement that answered: DESCRIBE DETAIL or DESCRIBE TABLE EXTENDED


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def locate(spark: Any, name: str) -> Located:
    """Where the session's catalog keeps the table ``name`` (InputError, one line, when it has no such table,
    the table is a view, or it is not Delta)."""
    target = sql_name(name)
    found = _detail(spark, target) or _extended(spark, target, name)
    if found.format.lower() != "delta":
        what = f"its format is {found.format!r}" if found.format else "the catalog names no format for it"
        raise InputError(f"catalog table {name} is not a Delta table ({what}, by {found.via})")
    if not found.location:
        raise InputError(f"the Spark catalog gives no location for table {name} (by {found.via})")
    return found


def _detail(spark: Any, target: str) -> Located | None:
    """``DESCRIBE DETAIL`` (delta-spark, Databricks), or None where the server cannot answer it (Sail)."""
    try:
        rows = spark.sql(f"DESCRIBE DETAIL {target}").collect()
    except Exception:
        return None
    detail = rows[0].asDict() if rows else {}
    return Located(str(detail.get("location") or ""), str(detail.get("format") or ""), "DESCRIBE DETAIL")


def _extended(spark: Any, target: str, name: str) -> Located:
    """``DESCRIBE TABLE EXTENDED``: its ``Type``, ``Provider`` and ``Location`` rows."""
    try:
        rows = spark.sql(f"DESCRIBE TABLE EXTENDED {target}").collect()
    except Exception as exc:
        raise InputError(f"the Spark catalog cannot describe table {name}: {_first_line(exc)}") from None
    info = {str(r[0]).strip().lower(): str(r[1] or "").strip() for r in rows if r[0] is not None}
    if info.get("type", "").upper() in ("VIEW", "TEMPORARY", "MATERIALIZED_VIEW"):
        raise InputError(f"catalog table {name} is a view ({info['type']}), not a Delta table")
    return Located(info.get("location", ""), info.get("provider", ""), "DESCRIBE TABLE EXTENDED")


@contextmanager
def catalog_session(remote: str | None) -> Iterator[Any]:
    """A Spark session to ask the catalog with: Spark Connect at ``remote`` (closed afterwards), else the classic
    session with Delta (left open: the command's engine, built next, gets the same session back)."""
    from dsr.engines.spark import SparkEngine

    engine = SparkEngine.connect(remote=remote, app_name="dsr-lake")
    try:
        yield engine.spark
    finally:
        if engine.is_connect:
            engine.close()
