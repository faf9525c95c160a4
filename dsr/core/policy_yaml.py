"""Reading the policy file: UTF-8 text, YAML with every duplicate key refused (YAML would keep the last)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dsr.errors import PolicyError


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


def load_yaml(p: Path) -> Mapping[str, Any]:
    """The policy file as a YAML mapping; one-line PolicyError for every way it can be unreadable."""
    import yaml

    text = _read_text(p)
    try:
        raw = yaml.load(text, Loader=_loader())  # a yaml.SafeLoader subclass
    except _DuplicateKey as dup:
        raise PolicyError(
            f"policy {p}: duplicate key {show(dup.key)} at line {dup.line} (first at line {dup.first}); "
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
    return raw


def show(value: Any, limit: int = 80) -> str:
    """repr() of a policy value for a message, one line and cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
