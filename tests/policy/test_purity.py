"""`hub/policy/` is pure: it imports nothing from the web, the store, the sources or the clock."""

from __future__ import annotations

import ast

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


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_policy_module_imports_nothing_impure(path: object) -> None:
    tree = ast.parse(path.read_text())  # type: ignore[attr-defined]
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    bad = [
        name
        for name in imported
        if name.split(".")[0] in FORBIDDEN
        or any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert not bad


def test_there_are_policy_modules_to_check() -> None:
    assert {path.name for path in MODULES} >= {"access.py", "rows.py"}
