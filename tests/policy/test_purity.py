"""`hub/policy/` is pure: it imports nothing from the web, the store, the sources or the clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

FORBIDDEN = (
    "hub.app",
    "hub.store",
    "hub.sources",
    "hub.settings",
    "hub.context",
    "starlette",
    "httpx",
    "sqlalchemy",
    "sqlmodel",
    "redis",
    "strawberry",
    "os",
    "time",
    "datetime",
)
MODULES = sorted((ROOT / "hub" / "policy").glob("*.py"))


def _runtime_imports(tree: ast.Module) -> list[str]:
    """Imported module names, leaving out those only imported for type checking."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_policy_module_imports_nothing_impure(path: Path) -> None:
    imported = _runtime_imports(ast.parse(path.read_text()))
    bad = [
        name for name in imported if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert not bad


def test_there_are_policy_modules_to_check() -> None:
    assert {path.name for path in MODULES} >= {"access.py", "rows.py"}
