"""The policy's identity keys: ``identifiers`` (the kinds), ``identity`` (the link tables), a table's subject
columns (``subject:`` + ``kind:``, or ``subjects:``). One-line PolicyError naming the key at fault."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dsr.core.identifiers import IMPLICIT, KIND_TYPES, NORMALISATIONS, IdKind
from dsr.core.masks import Mask
from dsr.core.policy_model import MENTIONED, OWNER, ROLES, SUBJECT_MASKS, IdentityLink, SubjectColumn
from dsr.core.policy_paths import clean_path, location_problem, table_uri
from dsr.core.policy_yaml import show
from dsr.errors import PolicyError

__all__ = ["parse_identifiers", "parse_identity", "parse_subjects"]

_KIND_KEYS = {"type", "normalise"}
_SUBJECT_KEYS = {"column", "kind", "role", "mask"}


def parse_identifiers(raw: Any, p: Path) -> tuple[IdKind, ...]:
    """``identifiers: {KIND: {type, normalise}}`` -> the kinds (none: the implicit kind)."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise PolicyError(f"policy {p}: 'identifiers' must map kind names to {{type, normalise}}")
    import re

    kinds = []
    for name, spec in raw.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", name):
            raise PolicyError(f"policy {p}: identifier kind {show(name)}: a name is a letter, then letters, digits "
                              "or '_' (at most 64)")
        if name == IMPLICIT:
            raise PolicyError(f"policy {p}: identifier kind {name!r} is reserved (the implicit kind of a policy "
                              "without 'identifiers'): choose another name")
        label = f"policy {p}: identifier kind {name!r}"
        spec = spec if spec is not None else {}
        if not isinstance(spec, Mapping):
            raise PolicyError(f"{label} must be a mapping {{type, normalise}}")
        unknown = sorted(set(spec) - _KIND_KEYS, key=repr)
        if unknown:
            raise PolicyError(f"{label}: unknown key {show(unknown[0])} (known: normalise, type)")
        kind_type = spec.get("type", "string")
        if kind_type not in KIND_TYPES:
            raise PolicyError(f"{label}: unknown type {show(kind_type)} (use one of: {', '.join(KIND_TYPES)})")
        steps = spec.get("normalise") or []
        if isinstance(steps, str):
            steps = [steps]
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise PolicyError(f"{label}: 'normalise' must be a list of steps ({', '.join(NORMALISATIONS)})")
        for s in steps:
            if s not in NORMALISATIONS:
                raise PolicyError(f"{label}: unknown normalisation {show(s)} (use: {', '.join(NORMALISATIONS)})")
        if len(set(steps)) != len(steps):
            raise PolicyError(f"{label}: a normalisation step is listed twice")
        if steps and kind_type != "string":
            raise PolicyError(f"{label}: 'normalise' applies to text, not to type {kind_type!r}")
        kinds.append(IdKind(name, kind_type, tuple(steps)))
    return tuple(kinds)


def parse_identity(raw: Any, kinds: Mapping[str, IdKind], lake: str, p: Path) -> tuple[IdentityLink, ...]:
    """``identity: [{path, columns: {column: KIND}}]`` -> the link tables."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PolicyError(f"policy {p}: 'identity' must be a list of {{path, columns: {{column: KIND}}}}")
    if raw and not kinds:
        raise PolicyError(f"policy {p}: 'identity' needs 'identifiers' (the kinds its columns hold)")
    links = []
    for i, e in enumerate(raw, start=1):
        if not isinstance(e, Mapping) or not isinstance(e.get("path"), str) or not e["path"].strip():
            raise PolicyError(f"policy {p}: identity entry {i} needs a 'path'")
        label = f"policy {p}: identity table {show(e['path'])}"
        unknown = sorted(set(e) - {"path", "columns"}, key=repr)
        if unknown:
            raise PolicyError(f"{label}: unknown key {show(unknown[0])} (known: columns, path)")
        problem = location_problem(e["path"], lake)
        if problem:
            raise PolicyError(f"{label} {problem}; a link table's path is relative to the lake, or below it")
        cols = e.get("columns")
        if not isinstance(cols, Mapping) or len(cols) < 2:
            raise PolicyError(f"{label}: 'columns' must map at least two columns to identifier kinds")
        for col, kind in cols.items():
            if not isinstance(col, str) or not col:
                raise PolicyError(f"{label}: a column name must be text")
            if kind not in kinds:
                raise PolicyError(f"{label}, column {col!r}: unknown identifier kind {show(kind)} "
                                  f"(declared: {', '.join(sorted(kinds))})")
        links.append(IdentityLink(clean_path(e["path"]), table_uri(lake, e["path"]),
                                  tuple((str(c), str(k)) for c, k in cols.items())))
    return tuple(links)


def parse_subjects(rt: Mapping[str, Any], label: str, kinds: Mapping[str, IdKind],
                   parse_mask: Callable[[Any, str], Mask]) -> tuple[SubjectColumn, ...]:
    """A table's subject columns: ``subject:`` (+ ``kind:``) or ``subjects: [{column, kind, role, mask}]``."""
    if "subjects" in rt and "subject" in rt:
        raise PolicyError(f"{label}: give either 'subject' (one column) or 'subjects' (several), not both")
    if "subjects" not in rt:
        subject = rt.get("subject")
        if not isinstance(subject, str) or not subject:
            raise PolicyError(f"{label}: 'subject' must name the column that holds the subject id")
        return (SubjectColumn(subject, _kind_of(rt.get("kind"), f"{label}, subject {subject!r}", kinds)),)
    if "kind" in rt:
        raise PolicyError(f"{label}: 'kind' goes with 'subject'; with 'subjects', each entry names its kind")
    raw = rt["subjects"]
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{label}: 'subjects' must be a non-empty list of {{column, kind, role, mask}}")
    out: list[SubjectColumn] = []
    for i, e in enumerate(raw, start=1):
        if not isinstance(e, Mapping) or not isinstance(e.get("column"), str) or not e["column"]:
            raise PolicyError(f"{label}: subjects entry {i} needs a 'column'")
        col = e["column"]
        where = f"{label}, subject column {col!r}"
        unknown = sorted(set(e) - _SUBJECT_KEYS, key=repr)
        if unknown:
            raise PolicyError(f"{where}: unknown key {show(unknown[0])} (known: {', '.join(sorted(_SUBJECT_KEYS))})")
        if any(c.column == col for c in out):
            raise PolicyError(f"{where}: listed twice")
        role = e.get("role", OWNER)
        if role not in ROLES:
            raise PolicyError(f"{where}: unknown role {show(role)} (use one of: {', '.join(ROLES)})")
        masks: list[tuple[str, Mask]] = []
        raw_mask = e.get("mask") or {}
        if not isinstance(raw_mask, Mapping):
            raise PolicyError(f"{where}: 'mask' must map column names to mask strategies")
        for mcol, spec in raw_mask.items():
            masks.append((str(mcol), parse_mask(spec, f"{where}, mask of column {mcol!r}")))
        if role == OWNER and masks:
            raise PolicyError(f"{where}: 'mask' is for role 'mentioned'; an owner's row gets the table's strategy "
                              "(its 'mask' under 'anonymise')")
        if role == MENTIONED:
            own = dict(masks).get(col)
            if own is None or own.strategy not in SUBJECT_MASKS:
                raise PolicyError(f"{where}: role 'mentioned' must mask the column itself (pseudonymise or "
                                  "nullify), else the id survives")
        out.append(SubjectColumn(col, _kind_of(e.get("kind"), where, kinds), role, tuple(masks)))
    if not any(c.owner for c in out):
        raise PolicyError(f"{label}: 'subjects' needs at least one column of role 'owner' (whose rows the table "
                          "keeps about the person)")
    return tuple(out)


def _kind_of(raw: Any, where: str, kinds: Mapping[str, IdKind]) -> str:
    if raw is None:
        if IMPLICIT in kinds:
            return IMPLICIT
        raise PolicyError(f"{where}: needs a 'kind' (the policy declares identifiers: {', '.join(sorted(kinds))})")
    if IMPLICIT in kinds and raw != IMPLICIT:
        raise PolicyError(f"{where}: 'kind' {show(raw)} needs 'identifiers' declaring it")
    if raw not in kinds:
        raise PolicyError(f"{where}: unknown identifier kind {show(raw)} (declared: {', '.join(sorted(kinds))})")
    return str(raw)
