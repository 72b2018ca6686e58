"""Checked reads of decoded upstream JSON: a wrong shape raises `ValueError` or `TypeError`,
which `SourceClient` turns into SOURCE_UNAVAILABLE."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any


def obj(value: Any) -> Mapping[str, Any]:
    """`value` as a JSON object."""
    if type(value) is dict:  # what json gives; the abstract check below costs 10x more
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def items(value: Any, name: str) -> list[Any]:
    """The list under `name` of the object `value`."""
    found = obj(value)[name]
    if not isinstance(found, list):
        raise TypeError(f"{name}: expected a list, got {type(found).__name__}")
    return found


def text(value: Any, name: str) -> str:
    found = obj(value)[name]
    if not isinstance(found, str):
        raise TypeError(f"{name}: expected a string, got {type(found).__name__}")
    return found


def optional_text(value: Any, name: str) -> str | None:
    found = obj(value).get(name)
    if found is not None and not isinstance(found, str):
        raise TypeError(f"{name}: expected a string, got {type(found).__name__}")
    return found


def integer(value: Any, name: str) -> int:
    found = obj(value)[name]
    if type(found) is not int:  # bool is a subclass of int, and not an integer here
        raise TypeError(f"{name}: expected an integer, got {type(found).__name__}")
    return found


def integers(values: Iterable[Any]) -> bool:
    """Whether every value is an integer (not a bool); the types are gathered in C."""
    return set(map(type, values)) <= {int}


def number(value: Any, name: str) -> float:
    found = obj(value)[name]
    if isinstance(found, bool) or not isinstance(found, int | float):
        raise TypeError(f"{name}: expected a number, got {type(found).__name__}")
    return float(found)


def boolean(value: Any, name: str) -> bool:
    found = obj(value)[name]
    if not isinstance(found, bool):
        raise TypeError(f"{name}: expected a boolean, got {type(found).__name__}")
    return found


def timestamp(value: Any, name: str) -> datetime:
    return datetime.fromisoformat(text(value, name).replace("Z", "+00:00"))


def chunks(ids: list[str], size: int) -> list[list[str]]:
    """`ids` in consecutive batches of at most `size`."""
    return [ids[start : start + size] for start in range(0, len(ids), size)]
