"""The YAML policy -> frozen, validated objects.

``load_policy`` checks the file on its own (keys, strategies, masks, reasons, the pseudonym key);
``check_against_lake`` then reads only Delta metadata (schemas) to check paths and columns. Both raise
``PolicyError`` with one line naming the table, column or key at fault.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsr import storage
from dsr.errors import PolicyError

__all__ = [
    "ERASE_STRATEGIES",
    "MASK_STRATEGIES",
    "Exempt",
    "Mask",
    "Policy",
    "TableSpec",
    "check_against_lake",
    "load_policy",
    "resolve_policy_path",
]

ERASE_STRATEGIES = ("delete", "anonymise", "retain")
MASK_STRATEGIES = ("nullify", "redact", "pseudonymise", "year", "month", "ipv4_24")
_SUBJECT_MASKS = ("pseudonymise", "nullify")

_TOP_KEYS = {
    "lake", "control", "exports", "pseudonym_key_env", "export_before_erase", "tables", "exempt",
    "subject_columns", "max_attempts", "claim_ttl_minutes", "due_days",
}
_TABLE_KEYS = {"name", "path", "subject", "erase", "mask", "reason", "never_export", "export"}


@dataclass(frozen=True)
class Mask:
    """One column's mask: a strategy, and for ``redact`` the constant that replaces the value."""

    strategy: str
    value: str | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    path: str
    uri: str
    subject: str
    erase: str
    masks: tuple[tuple[str, Mask], ...] = ()
    reason: str | None = None
    never_export: tuple[str, ...] = ()
    export: bool = True

    @property
    def mask_map(self) -> dict[str, Mask]:
        return dict(self.masks)


@dataclass(frozen=True)
class Exempt:
    path: str
    reason: str


@dataclass(frozen=True)
class Policy:
    source: str
    lake: str
    control: str
    exports: str
    pseudonym_key_env: str
    export_before_erase: bool
    tables: tuple[TableSpec, ...]
    exempt: tuple[Exempt, ...] = ()
    subject_columns: tuple[str, ...] = ()
    max_attempts: int = 3
    claim_ttl_minutes: int = 60
    due_days: int = 30
    _key: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def control_uri(self) -> str:
        return storage.join(self.lake, self.control)

    @property
    def requests_uri(self) -> str:
        return storage.join(self.control_uri, "requests")

    @property
    def audit_uri(self) -> str:
        return storage.join(self.control_uri, "audit")

    def table(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name:
                return t
        raise PolicyError(f"no table named {name!r} in the policy {self.source}")

    @property
    def needs_key(self) -> bool:
        return any(m.strategy == "pseudonymise" for t in self.tables for _, m in t.masks)

    def pseudonym_key(self) -> bytes:
        if self._key is None:
            raise PolicyError(f"pseudonym key: environment variable {self.pseudonym_key_env} is not set")
        return self._key


def resolve_policy_path(explicit: str | None) -> str:
    """``--policy FILE``, else ``$DSR_POLICY``, else ``./dsr.yml``."""
    return explicit or os.environ.get("DSR_POLICY") or "dsr.yml"


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate the policy file on its own (no lake access)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise PolicyError(f"policy file not found: {p} (use --policy FILE or set DSR_POLICY)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"policy {p}: not valid YAML{where}") from None
    if not isinstance(raw, Mapping):
        raise PolicyError(f"policy {p}: expected a mapping with 'lake' and 'tables' at the top")
    return _parse(raw, p)


def _parse(raw: Mapping[str, Any], p: Path) -> Policy:
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise PolicyError(f"policy {p}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    base = p.resolve().parent

    def where(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(f"policy {p}: '{key}' must be a non-empty path")
        return value if storage.is_remote(value) else str((base / value).resolve())

    lake = where(raw.get("lake"), "lake")
    control = raw.get("control", "_dsr")
    if not isinstance(control, str) or not control or storage.is_remote(control) or control.startswith("/"):
        raise PolicyError(f"policy {p}: 'control' must be a relative folder name under the lake")
    exports = where(raw.get("exports", "./exports"), "exports")
    key_env = raw.get("pseudonym_key_env", "DSR_PSEUDONYM_KEY")
    if not isinstance(key_env, str) or not key_env:
        raise PolicyError(f"policy {p}: 'pseudonym_key_env' must name an environment variable")
    ebe = raw.get("export_before_erase", True)
    if not isinstance(ebe, bool):
        raise PolicyError(f"policy {p}: 'export_before_erase' must be true or false")
    ints = {}
    for name, default, low in (("max_attempts", 3, 1), ("claim_ttl_minutes", 60, 1), ("due_days", 30, 1)):
        val = raw.get(name, default)
        if not isinstance(val, int) or isinstance(val, bool) or val < low:
            raise PolicyError(f"policy {p}: '{name}' must be a whole number >= {low}")
        ints[name] = val

    raw_tables = raw.get("tables")
    if not isinstance(raw_tables, list) or not raw_tables:
        raise PolicyError(f"policy {p}: 'tables' must be a non-empty list")
    tables: list[TableSpec] = []
    seen_names: set[str] = set()
    seen_paths: dict[str, str] = {}
    for i, rt in enumerate(raw_tables, start=1):
        t = _parse_table(rt, i, p, lake)
        if t.name in seen_names:
            raise PolicyError(f"policy {p}: duplicate table name {t.name!r}")
        if t.uri in seen_paths:
            raise PolicyError(
                f"policy {p}: tables {seen_paths[t.uri]!r} and {t.name!r} have the same path {t.path!r}"
            )
        seen_names.add(t.name)
        seen_paths[t.uri] = t.name
        tables.append(t)

    exempt: list[Exempt] = []
    raw_exempt = raw.get("exempt") or []
    if not isinstance(raw_exempt, list):
        raise PolicyError(f"policy {p}: 'exempt' must be a list of {{path, reason}}")
    for e in raw_exempt:
        if not isinstance(e, Mapping) or not isinstance(e.get("path"), str) or not e["path"]:
            raise PolicyError(f"policy {p}: every 'exempt' entry needs a 'path'")
        reason = e.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise PolicyError(f"policy {p}: exempt path {e['path']!r} needs a 'reason'")
        exempt.append(Exempt(path=_clean_path(e["path"]), reason=reason.strip()))

    subject_columns = raw.get("subject_columns") or []
    if not isinstance(subject_columns, list) or not all(isinstance(c, str) and c for c in subject_columns):
        raise PolicyError(f"policy {p}: 'subject_columns' must be a list of column names")

    key: bytes | None = None
    policy = Policy(
        source=str(p),
        lake=lake,
        control=control.strip("/"),
        exports=exports,
        pseudonym_key_env=key_env,
        export_before_erase=ebe,
        tables=tuple(tables),
        exempt=tuple(exempt),
        subject_columns=tuple(subject_columns),
        max_attempts=ints["max_attempts"],
        claim_ttl_minutes=ints["claim_ttl_minutes"],
        due_days=ints["due_days"],
    )
    if policy.needs_key:
        value = os.environ.get(key_env, "")
        if not value:
            users = sorted({t.name for t in tables for _, m in t.masks if m.strategy == "pseudonymise"})
            raise PolicyError(
                f"policy {p}: table {users[0]!r} pseudonymises, but the key environment variable "
                f"{key_env} is not set (set it to a secret of at least 16 characters)"
            )
        if len(value) < 16:
            raise PolicyError(f"policy {p}: the key in {key_env} is too short (at least 16 characters)")
        key = value.encode("utf-8")
        object.__setattr__(policy, "_key", key)
    return policy


def _parse_table(rt: Any, i: int, p: Path, lake: str) -> TableSpec:
    if not isinstance(rt, Mapping):
        raise PolicyError(f"policy {p}: tables entry {i} must be a mapping")
    name = rt.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"policy {p}: tables entry {i} needs a 'name'")
    label = f"policy {p}: table {name!r}"
    unknown = sorted(set(rt) - _TABLE_KEYS)
    if unknown:
        raise PolicyError(f"{label}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TABLE_KEYS))})")
    path = rt.get("path", name)
    if not isinstance(path, str) or not path.strip():
        raise PolicyError(f"{label}: 'path' must be a non-empty string")
    subject = rt.get("subject")
    if not isinstance(subject, str) or not subject:
        raise PolicyError(f"{label}: 'subject' must name the column that holds the subject id")
    erase = rt.get("erase")
    if erase not in ERASE_STRATEGIES:
        raise PolicyError(f"{label}: unknown erase strategy {erase!r} (use one of: {', '.join(ERASE_STRATEGIES)})")

    masks: list[tuple[str, Mask]] = []
    raw_mask = rt.get("mask") or {}
    if not isinstance(raw_mask, Mapping):
        raise PolicyError(f"{label}: 'mask' must map column names to mask strategies")
    for col, spec in raw_mask.items():
        masks.append((str(col), _parse_mask(spec, f"{label}, column {col!r}")))
    if erase == "anonymise":
        if not masks:
            raise PolicyError(f"{label}: erase 'anonymise' needs a 'mask' for at least the subject column")
        subj_mask = dict(masks).get(subject)
        if subj_mask is None or subj_mask.strategy not in _SUBJECT_MASKS:
            raise PolicyError(
                f"{label}: 'anonymise' leaves the subject column {subject!r} unmasked, so the ID would survive; "
                f"mask it with pseudonymise or nullify"
            )
    elif masks:
        raise PolicyError(f"{label}: 'mask' only applies to erase 'anonymise', not {erase!r}")
    reason = rt.get("reason")
    if erase == "retain" and (not isinstance(reason, str) or not reason.strip()):
        raise PolicyError(f"{label}: erase 'retain' needs a 'reason' (the legal ground for keeping the rows)")
    if reason is not None and not isinstance(reason, str):
        raise PolicyError(f"{label}: 'reason' must be text")
    never = rt.get("never_export") or []
    if not isinstance(never, list) or not all(isinstance(c, str) for c in never):
        raise PolicyError(f"{label}: 'never_export' must be a list of column names")
    if subject in never:
        raise PolicyError(f"{label}: the subject column {subject!r} cannot be in 'never_export'")
    export = rt.get("export", True)
    if not isinstance(export, bool):
        raise PolicyError(f"{label}: 'export' must be true or false")
    return TableSpec(
        name=name,
        path=_clean_path(path),
        uri=storage.join(lake, path),
        subject=subject,
        erase=erase,
        masks=tuple(masks),
        reason=reason.strip() if isinstance(reason, str) else None,
        never_export=tuple(never),
        export=export,
    )


def _clean_path(path: str) -> str:
    """A table path as written, without stray slashes; absolute and remote paths stay absolute."""
    if storage.is_remote(path) or os.path.isabs(path):
        return path.rstrip("/") or path
    return path.strip("/")


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


# --- against the lake: Delta metadata only -------------------------------------------------------------


def check_against_lake(policy: Policy) -> dict[str, Any]:
    """Check every table path is a Delta table with the named columns and mask-compatible types.

    Reads only the Delta log (schemas). Returns ``{table name: pyarrow schema}``.
    """
    from dsr.masking import check_mask_type

    schemas: dict[str, Any] = {}
    for t in policy.tables:
        label = f"policy {policy.source}: table {t.name!r}"
        try:
            schema = read_schema(t.uri)
        except PolicyError as exc:
            raise PolicyError(f"{label}: {exc}") from None
        if schema is None:
            raise PolicyError(f"{label}: path {t.path!r} is not a Delta table")
        names = schema.names
        if t.subject not in names:
            raise PolicyError(f"{label}: subject column {t.subject!r} not found (columns: {', '.join(names)})")
        for col, mask in t.masks:
            if col not in names:
                raise PolicyError(f"{label}: mask on column {col!r}, which the table does not have "
                                  f"(columns: {', '.join(names)})")
            problem = check_mask_type(mask, schema.field(col))
            if problem:
                raise PolicyError(f"{label}, column {col!r}: {problem}")
        for col in t.never_export:
            if col not in names:
                raise PolicyError(f"{label}: never_export column {col!r} not found (columns: {', '.join(names)})")
        schemas[t.name] = schema
    return schemas


def read_schema(uri: str) -> Any:
    """The logical pyarrow schema of the Delta table at uri (from its log, via the access layer), or None when
    there is no Delta table there. Column-mapped tables give their logical names."""
    from dsr import access
    from dsr.errors import TableError

    if not storage.delta_table_exists(uri):
        return None
    try:
        return access.table_info(uri).schema
    except TableError as exc:
        raise PolicyError(f"{exc}") from None
