"""Imports flow downward only (STYLE rule 3), checked by walking every module's imports;
within a layer, the modules and packages import each other without cycles.

The pure core — transforms, routing, predictor — must stay usable offline and free of
serving, I/O and config code, so batch scoring and serving share one code path.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "muse"

#: Layer of each top-level module or package of muse; a module may import its own layer or below.
LAYERS: dict[str, int] = {
    "errors": 0,
    "extras": 0,
    "types": 0,
    "fingerprint": 0,
    "resilience": 0,
    "splits": 1,
    "threads": 0,
    "transforms": 1,
    "routing": 1,
    "_routing_config": 1,
    "features": 1,
    "datasets": 1,
    "backends": 2,
    "artifacts": 2,
    "scorefiles": 2,
    "predictor": 2,
    "featurestore": 2,
    "config": 3,
    "serving_config": 3,
    "schema": 3,
    "auth": 3,
    "snapshot": 4,
    "scoring": 4,
    "warmup": 4,
    "reasons": 4,
    "deployment": 4,
    "service": 4,
    "scorelog": 4,
    "fitting": 5,
    "fleet": 5,
    "export": 5,
    "refresh": 5,
    "backfill": 5,
    "evaluation": 5,
    "serving": 5,
    "cli": 6,
    "testing": 6,
    "demo": 6,
    "console": 6,
}
#: Third-party packages the pure core must not import at module level (request path stays lean).
HEAVY = {"pyarrow", "scipy", "pandas", "starlette", "fastapi", "uvicorn", "yaml", "pydantic"}
PURE = {"transforms", "routing", "_routing_config", "predictor", "features", "splits"}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def _top(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(tree: ast.Module, module_level_only: bool) -> list[str]:
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_downward(path: Path) -> None:
    top = _top(path)
    if top == "__init__":
        return
    assert top in LAYERS, f"{top} has no layer: add it to LAYERS (and to the README's layout)"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for name in _imports(tree, module_level_only=False):
        parts = name.split(".")
        if parts[0] != "muse" or len(parts) < 2:
            continue
        target = parts[1]
        assert LAYERS[target] <= LAYERS[top], (
            f"{path.name} ({top}) imports {name} from a higher layer"
        )
    if top in PURE:
        for name in _imports(tree, module_level_only=True):
            assert name.split(".")[0] not in HEAVY, f"pure module {path.name} imports {name}"


def test_every_layer_exists_or_is_planned() -> None:
    present = {_top(p) for p in _modules()} - {"__init__", "cli"}
    assert present <= set(LAYERS)


def _unit_graph() -> dict[str, set[str]]:
    """Top-level module or package → the others it imports (anywhere: at module level,
    in functions, under TYPE_CHECKING — a cycle hidden there is still a tangle)."""
    graph: dict[str, set[str]] = {}
    for path in _modules():
        top = _top(path)
        if top == "__init__":
            continue
        deps = graph.setdefault(top, set())
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in _imports(tree, module_level_only=False):
            parts = name.split(".")
            if parts[0] == "muse" and len(parts) >= 2 and parts[1] != top:
                deps.add(parts[1])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its units in order, the first repeated), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = 1
        path.append(unit)
        for dep in sorted(graph.get(unit, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state:
            found = visit(unit)
            if found:
                return found
    return None


def test_no_import_cycles_between_modules_of_a_layer() -> None:
    cycle = _cycle(_unit_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"scoring": {"service"}, "service": {"scoring"}}, ["scoring", "service", "scoring"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_the_cycle_finder_finds_cycles(
    graph: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert _cycle(graph) == expected
