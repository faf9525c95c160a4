"""The YAML policy -> frozen, validated objects.

``load_policy`` checks the file on its own (keys, duplicate keys, strategies, masks, reasons, names, that
every path stays under the lake, number ranges); it does not read the pseudonym key, so filing requests and
reading the control table and audit log need no secret. ``Policy.pseudonym_key()`` reads the key from the
environment when it is needed; ``check_against_lake`` (what commands that process data call) checks the key
when a mask pseudonymises, then reads only Delta metadata (schemas) to check paths and columns. All raise
``PolicyError`` with one line naming the file, table, column or key at fault (never the key's value).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsr.core.masks import MASKS, Mask, Strategy, check_mask_type
from dsr.delta import storage
from dsr.errors import PolicyError

__all__ = [
    "ERASE_STRATEGIES",
    "MASK_STRATEGIES",
    "Exempt",
    "Policy",
    "TableSpec",
    "check_against_lake",
    "load_policy",
    "resolve_policy_path",
]

ERASE_STRATEGIES = tuple(s.value for s in Strategy)
MASK_STRATEGIES = tuple(MASKS)
_SUBJECT_MASKS = tuple(name for name, kind in MASKS.items() if kind.masks_subject)

_TOP_KEYS = {
    "lake", "control", "exports", "pseudonym_key_env", "export_before_erase", "tables", "exempt",
    "subject_columns", "max_attempts", "claim_ttl_minutes", "due_days",
}
_TABLE_KEYS = {"name", "path", "subject", "erase", "mask", "reason", "never_export", "export"}

# A table name (and each segment of 'control'): letters, digits, '_', '-', '.', not starting with '.' or '-'
# (so never '.' or '..'), no separator; it names files under the exports root.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_NAME_LEN = 128
_NAME_RULE = (
    f"letters, digits, '_', '-' and '.', not starting with '.' or '-', at most {MAX_NAME_LEN} characters"
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# (key, default, lowest, highest)
_INT_RANGES = (
    ("max_attempts", 3, 1, 100),
    ("claim_ttl_minutes", 60, 1, 10080),  # 7 days
    ("due_days", 30, 1, 3650),
)
MIN_KEY_BYTES = 16
_KEY_RULE = f"at least {MIN_KEY_BYTES} bytes, not counting white space"


@dataclass(frozen=True)
class TableSpec:
    name: str
    path: str
    uri: str
    subject: str
    erase: Strategy
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
        """The HMAC key, read from the environment variable ``pseudonym_key_env`` now (never stored in the
        policy). PolicyError naming the variable, never its value, when it is unset, empty or too short."""
        env = self.pseudonym_key_env
        value = os.environ.get(env, "")
        if not value:
            users = sorted({t.name for t in self.tables for _, m in t.masks if m.strategy == "pseudonymise"})
            who = f"table {users[0]!r} pseudonymises, but " if users else ""
            raise PolicyError(
                f"policy {self.source}: {who}the key environment variable {env} is not set "
                f"(set it to a secret of {_KEY_RULE})"
            )
        if len("".join(value.split()).encode("utf-8", "surrogateescape")) < MIN_KEY_BYTES:
            raise PolicyError(f"policy {self.source}: the key in {env} is too short ({_KEY_RULE})")
        return value.encode("utf-8", "surrogateescape")  # the bytes of the environment, as given


def resolve_policy_path(explicit: str | None) -> str:
    """``--policy FILE``, else ``$DSR_POLICY``, else ``./dsr.yml``."""
    return explicit or os.environ.get("DSR_POLICY") or "dsr.yml"


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate the policy file on its own (no lake access)."""
    import yaml

    p = Path(path)
    text = _read_text(p)
    try:
        raw = yaml.load(text, Loader=_loader())  # a yaml.SafeLoader subclass
    except _DuplicateKey as dup:
        raise PolicyError(
            f"policy {p}: duplicate key {_show(dup.key)} at line {dup.line} (first at line {dup.first}); "
            f"YAML would silently keep only the last one"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"policy {p}: not valid YAML{where}") from None
    except RecursionError:
        raise PolicyError(f"policy {p}: not valid YAML (nested too deeply)") from None
    if not isinstance(raw, Mapping):
        raise PolicyError(f"policy {p}: expected a mapping with 'lake' and 'tables' at the top")
    return _parse(raw, p)


def _read_text(p: Path) -> str:
    """The policy file's text; one-line PolicyError if it is missing, not a file, unreadable or not UTF-8."""
    try:
        if p.is_dir():
            raise PolicyError(f"policy {p}: is a directory, not a policy file")
        if not p.exists():
            raise PolicyError(f"policy file not found: {p} (use --policy FILE or set DSR_POLICY)")
        if not p.is_file():
            raise PolicyError(f"policy {p}: not a regular file")
        data = p.read_bytes()
    except OSError as exc:
        raise PolicyError(f"policy {p}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except ValueError:  # e.g. an embedded NUL in the path
        raise PolicyError(f"policy file not found: {p} (use --policy FILE or set DSR_POLICY)") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PolicyError(f"policy {p}: not UTF-8 text (invalid byte at line {line}); save it as UTF-8") from None


class _DuplicateKey(Exception):
    """A mapping of the policy repeats a key (raised by the loader, turned into a PolicyError)."""

    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


_LOADER: Any = None


def _loader() -> Any:
    """yaml.SafeLoader, except that a key repeated in any mapping raises _DuplicateKey (safe_load keeps the
    last silently). Merge keys (``<<: *anchor``) keep their override semantics. Built on first use: the CLI
    must not import yaml before it needs it."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class StrictSafeLoader(yaml.SafeLoader):
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except (ValueError, OverflowError) as exc:  # e.g. the date 2024-02-30: a YAML error at its line
                raise yaml.constructor.ConstructorError(
                    None, None, f"cannot read the value ({type(exc).__name__})", node.start_mark
                ) from None

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node)
                    try:
                        first = seen.get(key)
                    except TypeError:  # unhashable: the base class reports it
                        continue
                    line = key_node.start_mark.line + 1
                    if first is not None:
                        raise _DuplicateKey(key, line, first)
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    _LOADER = StrictSafeLoader
    return _LOADER


def _show(value: Any, limit: int = 80) -> str:
    """repr() of a policy value for a message, one line and cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name_ok(name: str) -> bool:
    return len(name) <= MAX_NAME_LEN and NAME_PATTERN.fullmatch(name) is not None


def _segments(path: str) -> list[str]:
    """The '/'-separated segments of a path or URI rest, without empty and '.' segments."""
    return [s for s in path.split("/") if s not in ("", ".")]


def _remote_key(uri: str) -> tuple[str, list[str]]:
    """(scheme, segments) of a URI for comparing locations: s3a is s3, '//' and '.' segments collapse."""
    scheme, _, rest = uri.partition("://")
    scheme = scheme.lower()
    return ("s3" if scheme == "s3a" else scheme), _segments(rest)


def _location_problem(path: str, lake: str) -> str | None:
    """Why a table or exempt path does not lie strictly below the lake root, or None when it does.

    Relative paths are relative to the lake; absolute paths and URIs must lie below it. Local paths are
    resolved (symbolic links followed); URIs are compared textually after collapsing '//' and '.' segments,
    and any '..' segment in them is refused.
    """
    if _PATH_CONTROL.search(path):
        return "contains a control character"
    relative = "://" not in path and not os.path.isabs(path)
    if storage.is_remote(lake) or "://" in path:
        if not storage.is_remote(lake) or (not relative and not storage.is_remote(path)):
            return "is outside the lake"
        segs = path.split("/") if relative else path.partition("://")[2].split("/")
        if ".." in segs:
            return "has a '..' segment"
        if relative:
            if not _segments(path):
                return "is the lake root itself, not a folder below it"
            return None
        scheme, parts = _remote_key(path)
        lake_scheme, lake_parts = _remote_key(lake)
        if scheme != lake_scheme or parts[: len(lake_parts)] != lake_parts:
            return "is outside the lake"
        if len(parts) == len(lake_parts):
            return "is the lake root itself, not a folder below it"
        return None
    real_lake = os.path.realpath(lake)
    real = os.path.realpath(os.path.join(lake, path))
    if real == real_lake:
        return "is the lake root itself, not a folder below it"
    if os.path.commonpath([real, real_lake]) != real_lake:
        if not relative:
            return "is outside the lake"
        if ".." in path.split("/"):
            return "leaves the lake through '..'"
        return "resolves outside the lake (through a symbolic link)"
    return None


def _table_uri(lake: str, path: str) -> str:
    """Where a (checked) table path points: local paths joined and normalised; on object storage the URI as
    checked by _location_problem, without empty or '.' segments."""
    if storage.is_remote(path):
        scheme, _, rest = path.partition("://")
        return f"{scheme}://{'/'.join(_segments(rest))}"
    if storage.is_remote(lake):
        return lake.rstrip("/") + "/" + "/".join(_segments(path))
    return storage.join(lake, path)


def _nested(a: str, b: str) -> bool:
    """Whether location a is b or lies below it (local paths resolved; URIs compared by segments)."""
    if storage.is_remote(a) != storage.is_remote(b):
        return False
    if storage.is_remote(a):
        (sa, pa), (sb, pb) = _remote_key(a), _remote_key(b)
        return sa == sb and pa[: len(pb)] == pb
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    return os.path.commonpath([ra, rb]) == rb


def _parse(raw: Mapping[str, Any], p: Path) -> Policy:
    unknown = sorted(set(raw) - _TOP_KEYS, key=repr)
    if unknown:
        raise PolicyError(f"policy {p}: unknown key {_show(unknown[0])} (known: {', '.join(sorted(_TOP_KEYS))})")
    base = p.resolve().parent

    def where(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(f"policy {p}: '{key}' must be a non-empty path")
        if _PATH_CONTROL.search(value):
            raise PolicyError(f"policy {p}: '{key}' contains a control character")
        return value if storage.is_remote(value) else os.path.realpath(base / value)

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

    raw_tables = raw.get("tables")
    if not isinstance(raw_tables, list) or not raw_tables:
        raise PolicyError(f"policy {p}: 'tables' must be a non-empty list")
    tables: list[TableSpec] = []
    seen_names: set[str] = set()
    seen_paths: dict[str, str] = {}
    control_uri = storage.join(lake, control)
    for i, rt in enumerate(raw_tables, start=1):
        t = _parse_table(rt, i, p, lake)
        if _nested(t.uri, control_uri) or _nested(control_uri, t.uri):
            raise PolicyError(
                f"policy {p}: table {t.name!r}: path {_show(t.path)} overlaps the control folder "
                f"{control!r} (dsr's own tables)"
            )
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
        if not isinstance(e, Mapping) or not isinstance(e.get("path"), str) or not e["path"].strip():
            raise PolicyError(f"policy {p}: every 'exempt' entry needs a 'path'")
        unknown = sorted(set(e) - {"path", "reason"}, key=repr)
        if unknown:
            raise PolicyError(f"policy {p}: exempt path {_show(e['path'])}: unknown key {_show(unknown[0])} "
                              f"(known: path, reason)")
        problem = _location_problem(e["path"], lake)
        if problem:
            raise PolicyError(
                f"policy {p}: exempt path {_show(e['path'])} {problem}; an exempt path is relative to the lake, "
                f"or an absolute path or URI below it"
            )
        reason = e.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise PolicyError(f"policy {p}: exempt path {_show(e['path'])} needs a 'reason'")
        exempt.append(Exempt(path=_clean_path(e["path"]), reason=reason.strip()))

    subject_columns = raw.get("subject_columns") or []
    if not isinstance(subject_columns, list) or not all(isinstance(c, str) and c for c in subject_columns):
        raise PolicyError(f"policy {p}: 'subject_columns' must be a list of column names")

    return Policy(
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


def _parse_control(control: Any, lake: str, p: Path) -> str:
    """'control': a relative folder below the lake, one or more '/'-separated names (see NAME_PATTERN)."""
    rule = (f"policy {p}: 'control' must be a relative folder under the lake: one or more names of {_NAME_RULE}, "
            f"separated by '/'")
    if not isinstance(control, str):
        raise PolicyError(rule)
    segments = control.rstrip("/").split("/")
    if not control.rstrip("/") or not all(_name_ok(seg) for seg in segments):
        raise PolicyError(f"{rule} (got {_show(control)})")
    folder = "/".join(segments)
    if not storage.is_remote(lake) and _location_problem(folder, lake):
        raise PolicyError(f"policy {p}: 'control' {folder!r} resolves outside the lake (through a symbolic link)")
    return folder


def _parse_table(rt: Any, i: int, p: Path, lake: str) -> TableSpec:
    if not isinstance(rt, Mapping):
        raise PolicyError(f"policy {p}: tables entry {i} must be a mapping")
    name = rt.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"policy {p}: tables entry {i} needs a 'name'")
    if not _name_ok(name):
        raise PolicyError(
            f"policy {p}: tables entry {i}: 'name' {_show(name)} is not a table name ({_NAME_RULE}; "
            f"a name is not a path: put the location in 'path')"
        )
    label = f"policy {p}: table {name!r}"
    unknown = sorted(set(rt) - _TABLE_KEYS, key=repr)
    if unknown:
        raise PolicyError(f"{label}: unknown key {_show(unknown[0])} (known: {', '.join(sorted(_TABLE_KEYS))})")
    path = rt.get("path", name)
    if not isinstance(path, str) or not path.strip():
        raise PolicyError(f"{label}: 'path' must be a non-empty string")
    problem = _location_problem(path, lake)
    if problem:
        raise PolicyError(
            f"{label}: path {_show(path)} {problem}; a table path is relative to the lake {lake}, "
            f"or an absolute path or URI below it"
        )
    subject = rt.get("subject")
    if not isinstance(subject, str) or not subject:
        raise PolicyError(f"{label}: 'subject' must name the column that holds the subject id")
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
        subj_mask = dict(masks).get(subject)
        if subj_mask is None or subj_mask.strategy not in _SUBJECT_MASKS:
            raise PolicyError(
                f"{label}: 'anonymise' leaves the subject column {subject!r} unmasked, so the ID would survive; "
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
    if subject in never:
        raise PolicyError(f"{label}: the subject column {subject!r} cannot be in 'never_export'")
    export = rt.get("export", True)
    if not isinstance(export, bool):
        raise PolicyError(f"{label}: 'export' must be true or false")
    return TableSpec(
        name=name,
        path=_clean_path(path),
        uri=_table_uri(lake, path),
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

    Commands that process data call it before anything else: when a mask pseudonymises, the key must be set
    (``Policy.pseudonym_key()``; a PolicyError names the variable). Then reads only the Delta log (schemas).
    Returns ``{table name: pyarrow schema}``.
    """
    if policy.needs_key:
        policy.pseudonym_key()
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
    from dsr.delta import access
    from dsr.delta.features import unreadable_features
    from dsr.errors import TableError

    if not storage.delta_table_exists(uri):
        return None
    try:
        info = access.table_info(uri)
    except TableError as exc:
        raise PolicyError(f"{exc}") from None
    if not info.opened and not unreadable_features(info):
        # read from the log alone, and no unsupported feature explains why delta-rs could not open it: corrupt
        raise PolicyError(str(info.open_error))
    return info.schema
