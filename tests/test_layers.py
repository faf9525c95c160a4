"""The package's layers run downward only: no module imports from a layer above its own, and no import circle.

    cli, orchestrate -> steps -> verify, exports -> plan -> core -> engines -> delta -> errors
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DSR = Path(__file__).resolve().parent.parent / "dsr"
ORDER = ["errors", "delta", "engines", "core", "plan", "verify", "exports", "steps", "cli", "orchestrate"]
LEVEL = {"errors": 0, "delta": 1, "engines": 2, "core": 3, "plan": 4, "verify": 5, "exports": 5, "steps": 6,
         "cli": 7, "orchestrate": 7}


def _modules() -> dict[str, Path]:
    out = {}
    for path in DSR.rglob("*.py"):
        rel = path.relative_to(DSR.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path) -> set[str]:
    """The dsr modules a file imports (``from pkg import module`` counts as the module, not the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dsr"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dsr"))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LEVEL else None


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)))
def test_no_module_imports_from_a_layer_above_its_own(module: str) -> None:
    own = LEVEL[str(_layer(module))]
    above = sorted(i for i in _imports(MODULES[module]) if _layer(i) and LEVEL[str(_layer(i))] > own)
    assert not above, f"{module} imports {above}"


def test_every_module_sits_in_a_layer() -> None:
    loose = sorted(m for m in MODULES if m != "dsr" and not _layer(m))
    assert loose == [], loose
    assert set(ORDER) == set(LEVEL)


def test_there_is_no_import_circle() -> None:
    graph = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    seen: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        seen[m] = 1
        for n in sorted(graph[m]):
            if seen.get(n) == 1:
                raise AssertionError(" -> ".join([*stack[stack.index(n):], n]) if n in stack else n)
            if n not in seen:
                visit(n, [*stack, n])
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m, [m])
