"""The emulator's modules import each other as a DAG, at module level only."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import emulator

PACKAGE = Path(emulator.__file__).parent


def _relative_imports() -> dict[str, tuple[set[str], list[str]]]:
    """Per module: the sibling modules it imports, and the relative imports found inside functions."""
    found: dict[str, tuple[set[str], list[str]]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        deps: set[str] = set()
        nested: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [alias.name for alias in node.names]
                deps.update(names)
                if id(node) not in top:
                    nested.append(f"{path.name}:{node.lineno}")
        found[path.stem] = (deps, nested)
    return found


def test_no_import_cycle() -> None:
    """Sibling imports form a DAG (only __main__ may import the package itself)."""
    graph = {mod: deps - {"__init__"} if mod == "__main__" else deps for mod, (deps, _) in _relative_imports().items()}
    graph.pop("__init__", None)
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a circle


def test_no_function_level_imports() -> None:
    """No relative import hides inside a function or under TYPE_CHECKING."""
    nested = [where for _, found in _relative_imports().values() for where in found]
    assert nested == []
