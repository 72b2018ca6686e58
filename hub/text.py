"""Text a request may carry: strings that UTF-8 can encode.

JSON can carry lone surrogates (`"\\ud800"`), which Python decodes into strings that no
UTF-8 encoder, store or log file accepts; GraphQL's parser refuses them in documents, so
only JSON values (variables, the other request parameters) need this check.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def is_text(value: str) -> bool:
    """True when `value` holds no lone surrogate (UTF-8 can encode it)."""
    return value.isascii() or _SURROGATE.search(value) is None


def invalid_text_at(value: Any) -> list[str | int] | None:
    """The path to the first string (a value or an object key) in the JSON `value` that is
    not text, or None. Iterative and linear in the size of `value`, however deep it nests."""
    if not isinstance(value, dict | list):
        return [] if isinstance(value, str) and not is_text(value) else None
    # Only containers wait on the stack, each linked to its parent's entry, so that a path
    # is made only when one is returned.
    pending: list[tuple[Any, _Link]] = [(value, None)]
    while pending:
        container, link = pending.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, inner in items:
            if isinstance(key, str) and not is_text(key):
                return _path((link, key))
            if isinstance(inner, str):
                if not is_text(inner):
                    return _path((link, key))
            elif inner and isinstance(inner, dict | list):
                pending.append((inner, (link, key)))
    return None


_Link = tuple[Any, str | int] | None


def _path(link: _Link) -> list[str | int]:
    path: list[str | int] = []
    while link is not None:
        link, part = link
        path.append(part)
    return path[::-1]


def printable(path: list[str | int]) -> str:
    """`path` as `a.b[0]`, lone surrogates written as `\\ud800` escapes."""
    written = ""
    for part in path:
        if isinstance(part, int):
            written += f"[{part}]"
        else:
            name = part.encode("utf-8", "backslashreplace").decode("utf-8")
            written += f".{name}" if written else name
    return written
