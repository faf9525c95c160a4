"""The raw YAML mapping -> a validated Policy: keys, strategies, masks, reasons, names, number ranges, and
every path under the lake (resolved, symlinks followed). One-line PolicyError naming the key at fault."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dsr.core.delivery import DELIVERY_KEYS, parse_delivery
from dsr.core.identifiers import IdKind
from dsr.core.masks import Mask, Strategy
from dsr.core.policy_identity import parse_identifiers, parse_identity, parse_subjects
from dsr.core.policy_model import ERASE_STRATEGIES, MASK_STRATEGIES, SUBJECT_MASKS, Exempt, Policy, TableSpec
from dsr.core.policy_paths import (
    MAX_NAME_LEN,
    PATH_CONTROL,
    clean_path,
    location_problem,
    name_ok,
    nested,
    table_uri,
)
from dsr.core.policy_yaml import show
from dsr.delta import storage
from dsr.engines.spark_catalog import NAME_RULE, display_name, parse_name
from dsr.errors import PolicyError

_TOP_KEYS = {
    "lake", "control", "exports", "pseudonym_key_env", "export_before_erase", "tables", "exempt",
    "subject_columns", "max_attempts", "claim_ttl_minutes", "due_days", "purge_after_hours",
    "export_ttl_days", "erase_cooldown_days", "lease_wait_seconds", "identifiers", "identity", "identity_max_ids",
    "identity_max_depth", *DELIVERY_KEYS,
}
_TABLE_KEYS = {"name", "path", "table", "subject", "kind", "subjects", "erase", "mask", "reason", "never_export",
               "export", "purge_after_hours"}

_NAME_RULE = (
    f"letters, digits, '_', '-' and '.', not starting with '.' or '-', at most {MAX_NAME_LEN} characters"
)
_SCHEMES = ("s3", "s3a")  # the remote lakes and exports storage.filesystem and delta-rs are set up for
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# (key, default, lowest, highest)
_INT_RANGES = (
    ("max_attempts", 3, 1, 100),
    ("claim_ttl_minutes", 60, 1, 10080),  # 7 days
    ("due_days", 30, 0, 3650),  # 0: due at once (tests, drills)
    ("purge_after_hours", 168, 0, 87600),  # 10 years
    ("export_ttl_days", 30, 1, 3650),
    ("erase_cooldown_days", 0, 0, 90),
    ("lease_wait_seconds", 120, 0, 86400),  # how long run, sweep and purge wait for each other (dsr.core.lease)
    ("identity_max_ids", 50, 1, 10000),  # the fan-out guard: a request resolving to more ids fails for review
    ("identity_max_depth", 3, 0, 20),  # link-table hops from the identifier a request names
)


def parse(raw: Mapping[str, Any], p: Path) -> Policy:
    """The validated Policy of a policy file's mapping (``p`` names the file in messages)."""
    unknown = sorted(set(raw) - _TOP_KEYS, key=repr)
    if unknown:
        raise PolicyError(f"policy {p}: unknown key {show(unknown[0])} (known: {', '.join(sorted(_TOP_KEYS))})")
    base = p.resolve().parent

    def where(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(f"policy {p}: '{key}' must be a non-empty path")
        if PATH_CONTROL.search(value):
            raise PolicyError(f"policy {p}: '{key}' contains a control character")
        if value.startswith("file:"):  # file:///abs/path is the local folder /abs/path
            local = storage.local_path(value)
            if local is None:
                raise PolicyError(f"policy {p}: '{key}' must be file:///absolute/path (a local folder)")
            value = local
        if storage.is_remote(value):
            scheme, _, rest = value.partition("://")
            if scheme not in _SCHEMES:
                raise PolicyError(f"policy {p}: '{key}' {show(value)}: unsupported scheme {scheme + '://'!r}; use "
                                  "a local path, file:///absolute/path or s3://bucket/prefix")
            if not rest.split("/", 1)[0]:
                raise PolicyError(f"policy {p}: '{key}' {show(value)} names no bucket; use s3://bucket/prefix")
            return value
        return os.path.realpath(base / value)

    lake = where(raw.get("lake"), "lake")
    control = _parse_control(raw.get("control", "_dsr"), lake, p)
    exports = where(raw.get("exports", "./exports"), "exports")
    key_env = raw.get("pseudonym_key_env", "DSR_PSEUDONYM_KEY")
    if not isinstance(key_env, str) or not _ENV_NAME.fullmatch(key_env):
        raise PolicyError(
            f"policy {p}: 'pseudonym_key_env' must name an environment variable (letters, digits and '_', "
            f"not starting with a digit)"
        )
    ebe = raw.get("export_before_erase", True)
    if not isinstance(ebe, bool):
        raise PolicyError(f"policy {p}: 'export_before_erase' must be true or false")
    ints = {}
    for name, default, low, high in _INT_RANGES:
        val = raw.get(name, default)
        if not isinstance(val, int) or isinstance(val, bool) or not low <= val <= high:
            raise PolicyError(f"policy {p}: '{name}' must be a whole number from {low} to {high}")
        ints[name] = val
    subject_columns = raw.get("subject_columns") or []
    if not isinstance(subject_columns, list) or not all(isinstance(c, str) and c for c in subject_columns):
        raise PolicyError(f"policy {p}: 'subject_columns' must be a list of column names")
    identifiers = parse_identifiers(raw.get("identifiers"), p)
    kinds = Policy(source=str(p), lake=lake, control="", exports="", pseudonym_key_env="", export_before_erase=False,
                   tables=(), identifiers=identifiers).kinds
    return Policy(
        source=str(p), lake=lake, control=control.strip("/"), exports=exports, pseudonym_key_env=key_env,
        export_before_erase=ebe, tables=_parse_tables(raw.get("tables"), lake, control, p, kinds),
        identifiers=identifiers, identity=parse_identity(raw.get("identity"), kinds, lake, p),
        identity_max_ids=ints["identity_max_ids"], identity_max_depth=ints["identity_max_depth"],
        exempt=_parse_exempt(raw.get("exempt") or [], lake, p), subject_columns=tuple(subject_columns),
        max_attempts=ints["max_attempts"], claim_ttl_minutes=ints["claim_ttl_minutes"], due_days=ints["due_days"],
        purge_after_hours=ints["purge_after_hours"], export_ttl_days=ints["export_ttl_days"],
        lease_wait_seconds=ints["lease_wait_seconds"],
        erase_cooldown_days=ints["erase_cooldown_days"], delivery=parse_delivery(raw, p, exports),
    )


def _parse_tables(raw_tables: Any, lake: str, control: str, p: Path,
                  kinds: Mapping[str, IdKind]) -> tuple[TableSpec, ...]:
    """Every table entry; names unique, paths distinct and apart from the control folder."""
    if not isinstance(raw_tables, list) or not raw_tables:
        raise PolicyError(f"policy {p}: 'tables' must be a non-empty list")
    tables: list[TableSpec] = []
    seen_names: set[str] = set()
    seen_paths: dict[str, str] = {}
    control_uri = storage.join(lake, control)
    for i, rt in enumerate(raw_tables, start=1):
        t = _parse_table(rt, i, p, lake, kinds)
        if t.name in seen_names:
            raise PolicyError(f"policy {p}: duplicate table name {t.name!r}")
        seen_names.add(t.name)
        tables.append(t)
        if not t.resolved:  # named in the Spark catalog: its location is checked once resolved
            continue
        if nested(t.uri, control_uri) or nested(control_uri, t.uri):
            raise PolicyError(
                f"policy {p}: table {t.name!r}: path {show(t.path)} overlaps the control folder "
                f"{control!r} (dsr's own tables)"
            )
        if t.uri in seen_paths:
            raise PolicyError(
                f"policy {p}: tables {seen_paths[t.uri]!r} and {t.name!r} have the same path {t.path!r}"
            )
        seen_paths[t.uri] = t.name
    return tuple(tables)


def _parse_exempt(raw_exempt: Any, lake: str, p: Path) -> tuple[Exempt, ...]:
    """Every exempt entry: a path under the lake and a reason."""
    if not isinstance(raw_exempt, list):
        raise PolicyError(f"policy {p}: 'exempt' must be a list of {{path, reason}}")
    exempt: list[Exempt] = []
    for e in raw_exempt:
        if not isinstance(e, Mapping) or not isinstance(e.get("path"), str) or not e["path"].strip():
            raise PolicyError(f"policy {p}: every 'exempt' entry needs a 'path'")
        unknown = sorted(set(e) - {"path", "reason"}, key=repr)
        if unknown:
            raise PolicyError(f"policy {p}: exempt path {show(e['path'])}: unknown key {show(unknown[0])} "
                              f"(known: path, reason)")
        problem = location_problem(e["path"], lake)
        if problem:
            raise PolicyError(
                f"policy {p}: exempt path {show(e['path'])} {problem}; an exempt path is relative to the lake, "
                f"or an absolute path or URI below it"
            )
        reason = e.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise PolicyError(f"policy {p}: exempt path {show(e['path'])} needs a 'reason'")
        exempt.append(Exempt(path=clean_path(e["path"]), reason=reason.strip()))
    return tuple(exempt)


def _parse_control(control: Any, lake: str, p: Path) -> str:
    """'control': a relative folder below the lake, one or more '/'-separated names (see NAME_PATTERN)."""
    rule = (f"policy {p}: 'control' must be a relative folder under the lake: one or more names of {_NAME_RULE}, "
            f"separated by '/'")
    if not isinstance(control, str):
        raise PolicyError(rule)
    segments = control.rstrip("/").split("/")
    if not control.rstrip("/") or not all(name_ok(seg) for seg in segments):
        raise PolicyError(f"{rule} (got {show(control)})")
    folder = "/".join(segments)
    if not storage.is_remote(lake) and location_problem(folder, lake):
        raise PolicyError(f"policy {p}: 'control' {folder!r} resolves outside the lake (through a symbolic link)")
    return folder


def _parse_table(rt: Any, i: int, p: Path, lake: str, kinds: Mapping[str, IdKind]) -> TableSpec:
    """One check per key of a table entry, in the order of the file; split, the order would be lost."""
    if not isinstance(rt, Mapping):
        raise PolicyError(f"policy {p}: tables entry {i} must be a mapping")
    name = rt.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"policy {p}: tables entry {i} needs a 'name'")
    if not name_ok(name):
        raise PolicyError(
            f"policy {p}: tables entry {i}: 'name' {show(name)} is not a table name ({_NAME_RULE}; "
            f"a name is not a path: put the location in 'path')"
        )
    label = f"policy {p}: table {name!r}"
    unknown = sorted(set(rt) - _TABLE_KEYS, key=repr)
    if unknown:
        raise PolicyError(f"{label}: unknown key {show(unknown[0])} (known: {', '.join(sorted(_TABLE_KEYS))})")
    catalog = _catalog_name(rt, label)
    path = "" if catalog else rt.get("path", name)  # neither path nor table: the path is the name, as ever
    if catalog is None:
        if not isinstance(path, str) or not path.strip():
            raise PolicyError(f"{label}: 'path' must be a non-empty string")
        problem = location_problem(path, lake)
        if problem:
            raise PolicyError(
                f"{label}: path {show(path)} {problem}; a table path is relative to the lake {lake}, "
                f"or an absolute path or URI below it"
            )
    subjects = parse_subjects(rt, label, kinds, _parse_mask)
    subject = subjects[0].column if subjects[0].owner else next(c.column for c in subjects if c.owner)
    owners = [c.column for c in subjects if c.owner]
    raw_erase = rt.get("erase")
    if raw_erase not in ERASE_STRATEGIES:
        raise PolicyError(
            f"{label}: unknown erase strategy {raw_erase!r} (use one of: {', '.join(ERASE_STRATEGIES)})"
        )
    erase = Strategy(raw_erase)

    masks: list[tuple[str, Mask]] = []
    raw_mask = rt.get("mask") or {}
    if not isinstance(raw_mask, Mapping):
        raise PolicyError(f"{label}: 'mask' must map column names to mask strategies")
    for col, spec in raw_mask.items():
        masks.append((str(col), _parse_mask(spec, f"{label}, column {col!r}")))
    if erase is Strategy.ANONYMISE:
        if not masks:
            raise PolicyError(f"{label}: erase 'anonymise' needs a 'mask' for at least the subject column")
        for owner in owners:
            subj_mask = dict(masks).get(owner)
            if subj_mask is None or subj_mask.strategy not in SUBJECT_MASKS:
                raise PolicyError(
                    f"{label}: 'anonymise' leaves the subject column {owner!r} unmasked, so the ID would survive; "
                    f"mask it with pseudonymise or nullify"
                )
    elif masks:
        raise PolicyError(f"{label}: 'mask' only applies to erase 'anonymise', not {erase.value!r}")
    reason = rt.get("reason")
    if erase is Strategy.RETAIN and (not isinstance(reason, str) or not reason.strip()):
        raise PolicyError(f"{label}: erase 'retain' needs a 'reason' (the legal ground for keeping the rows)")
    if reason is not None and not isinstance(reason, str):
        raise PolicyError(f"{label}: 'reason' must be text")
    never = rt.get("never_export") or []
    if not isinstance(never, list) or not all(isinstance(c, str) for c in never):
        raise PolicyError(f"{label}: 'never_export' must be a list of column names")
    for c in subjects:
        if c.column in never:
            raise PolicyError(f"{label}: the subject column {c.column!r} cannot be in 'never_export'")
    if erase is Strategy.RETAIN and any(not c.owner for c in subjects):
        raise PolicyError(f"{label}: erase 'retain' keeps every row as it is: a 'mentioned' subject column's masks "
                          "would not apply (make it an owner, or the table another strategy)")
    export = rt.get("export", True)
    if not isinstance(export, bool):
        raise PolicyError(f"{label}: 'export' must be true or false")
    window = rt.get("purge_after_hours")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or not 0 <= window <= 87600):
        raise PolicyError(f"{label}: 'purge_after_hours' must be a whole number from 0 to 87600")
    if window is not None and erase is Strategy.RETAIN:
        raise PolicyError(f"{label}: 'purge_after_hours' does not apply to erase 'retain' (its rows are kept, so "
                          "nothing of them is purged): remove it")
    return TableSpec(
        name=name,
        path=clean_path(path) if catalog is None else "",
        uri=table_uri(lake, path) if catalog is None else "",
        catalog=catalog,
        subject=subject,
        subjects=subjects,
        erase=erase,
        masks=tuple(masks),
        reason=reason.strip() if isinstance(reason, str) else None,
        never_export=tuple(never),
        export=export,
        purge_after_hours=window,
    )


def _catalog_name(rt: Mapping[str, Any], label: str) -> str | None:
    """``table:``, the table's name in the Spark catalog (as a person writes it), or None when the entry gives a
    ``path``; both at once is refused."""
    if "table" not in rt:
        return None
    if "path" in rt:
        raise PolicyError(f"{label}: give either 'path' (a folder under the lake) or 'table' (a name in the Spark "
                          "catalog), not both")
    raw = rt["table"]
    if not isinstance(raw, str):
        raise PolicyError(f"{label}: 'table' must be a catalog table name ({NAME_RULE})")
    try:
        return display_name(parse_name(raw))
    except ValueError as exc:
        raise PolicyError(f"{label}: 'table' {show(raw)} is not a catalog table name: {exc} ({NAME_RULE})") from None


def _parse_mask(spec: Any, label: str) -> Mask:
    if isinstance(spec, str):
        if spec == "redact":
            return Mask("redact", "[erased]")
        if spec not in MASK_STRATEGIES:
            raise PolicyError(f"{label}: unknown mask {spec!r} (use one of: {', '.join(MASK_STRATEGIES)})")
        return Mask(spec)
    if isinstance(spec, Mapping) and len(spec) == 1:
        (kind, value), = spec.items()
        if kind == "redact":
            if not isinstance(value, str):
                raise PolicyError(f"{label}: redact needs a text constant, e.g. {{redact: \"[erased]\"}}")
            return Mask("redact", value)
        raise PolicyError(f"{label}: unknown mask {kind!r} (use one of: {', '.join(MASK_STRATEGIES)})")
    raise PolicyError(f"{label}: a mask is a strategy name or {{redact: \"TEXT\"}}")
