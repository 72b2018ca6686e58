"""Text a request may carry: found wherever it hides in a JSON value, and named safely."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub.text import invalid_text_at, is_text, printable


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("fine é \U0001f600", None),
        ("\ud800", []),
        ({"a": [1, None, {"b": "x\udfff"}]}, ["a", 2, "b"]),
        ({"ok": "yes", "\udc00key": 1}, ["\udc00key"]),
        ([[], {}, [["\ud83d"]]], [2, 0, 0]),
        ({"a": 1.5, "b": True, "c": None}, None),
    ],
)
def test_the_first_string_that_is_no_text_is_found_with_its_path(
    value: Any, path: list[str | int] | None
) -> None:
    assert invalid_text_at(value) == path


def test_nesting_as_deep_as_json_allows_is_walked_without_recursion() -> None:
    deep = json.loads("[" * 900 + '"\\ud800"' + "]" * 900)
    assert invalid_text_at(deep) == [0] * 900


def test_a_path_is_printed_with_its_surrogates_escaped() -> None:
    printed = printable(["input", "\ud800", 3, "name"])
    assert printed == "input.\\ud800[3].name"
    assert is_text(printed)
