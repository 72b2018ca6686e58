"""Public ids: a type prefix and 16 hex digits that sort by creation time."""

from __future__ import annotations

import re
import secrets
import time
from typing import Final

PREFIXES: Final = {
    "influencer": "inf",
    "account": "acc",
    "campaign": "cmp",
    "member": "mem",
    "contact": "con",
    "consent": "cst",
}
_PATTERN = re.compile(r"([a-z]{3})_[0-9a-f]{16}")


def new_id(kind: str, *, at_ms: int | None = None, random_bits: int | None = None) -> str:
    """A fresh id: 40 bits of milliseconds then 24 random bits, so ids sort by creation."""
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    tail = secrets.randbits(24) if random_bits is None else random_bits & 0xFFFFFF
    return f"{PREFIXES[kind]}_{ms & 0xFF_FFFF_FFFF:010x}{tail:06x}"


def is_id(kind: str, value: object) -> bool:
    """True when `value` is shaped like an id of this kind."""
    if not isinstance(value, str):
        return False
    match = _PATTERN.fullmatch(value)
    return match is not None and match.group(1) == PREFIXES[kind]
