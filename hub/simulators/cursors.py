"""Opaque pagination cursors: a position wrapped in URL-safe base64."""

from __future__ import annotations

import base64
import binascii

from starlette.exceptions import HTTPException

_PREFIX = "sim1:"


def encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode((_PREFIX + position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The position inside `cursor`; a cursor this simulator did not issue is a 400."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(_PREFIX):
        raise HTTPException(400, "cursor is not one this API issued")
    return text.removeprefix(_PREFIX)
