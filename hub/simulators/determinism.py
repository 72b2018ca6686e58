"""seeded_random: per-entity values fixed by (seed, entity), the same in every run and process."""

from __future__ import annotations

import hashlib
import json
import random


def seeded_random(seed: int, *parts: object) -> random.Random:
    """A generator keyed by a hash of the seed and the parts (not Python's salted `hash`)."""
    # A JSON list keeps the parts apart: ("a", "b") and ("a:b",) are different keys.
    key = json.dumps([seed, *(str(part) for part in parts)]).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))


def split_shares(rng: random.Random, count: int) -> list[float]:
    """`count` positive shares, largest first, in whole basis points that add up to 10 000."""
    weights = [rng.uniform(1.0, 10.0) for _ in range(count)]
    total = sum(weights)
    basis_points = [max(1, int(weight / total * 10_000)) for weight in weights]
    basis_points.sort(reverse=True)
    basis_points[0] += 10_000 - sum(basis_points)
    return [points / 10_000 for points in basis_points]
