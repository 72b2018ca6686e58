"""Per-entity values: the same in every process, whatever Python's hash salt."""

from __future__ import annotations

import os
import subprocess
import sys

from hub.simulators.determinism import seeded_random, split_shares

PROGRAM = (
    "from hub.simulators.crm import contact_record;"
    "from hub.simulators.determinism import seeded_random;"
    "print(seeded_random(7, 'x', 'crm-acme-00001').random(), contact_record(7, 'crm-acme-00001'))"
)


def test_values_are_the_same_in_another_process_with_another_hash_seed() -> None:
    from hub.simulators.crm import contact_record

    here = (
        f"{seeded_random(7, 'x', 'crm-acme-00001').random()} {contact_record(7, 'crm-acme-00001')}"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert there == here


def test_seeded_random_depends_on_the_seed_and_every_part() -> None:
    keys: list[tuple[int, tuple[str, ...]]] = [
        (7, ("a", "b")),
        (8, ("a", "b")),
        (7, ("a", "c")),
        (7, ("b", "a")),
        (7, ("a:b",)),
    ]
    draws = {seeded_random(seed, *parts).random() for seed, parts in keys}
    assert len(draws) == 5
    assert seeded_random(7, "a", "b").random() == seeded_random(7, "a", "b").random()


def test_shares_are_positive_largest_first_and_add_up_to_one() -> None:
    for count in range(1, 8):
        shares = split_shares(seeded_random(7, "shares", count), count)
        assert len(shares) == count
        assert shares == sorted(shares, reverse=True)
        assert round(sum(shares) * 10_000) == 10_000
        assert min(shares) > 0
