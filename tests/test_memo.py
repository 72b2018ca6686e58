"""IdentityMemo: derived values remembered for the very same live source objects only."""

from __future__ import annotations

import gc
from functools import partial

from hub.memo import Held, IdentityMemo
from hub.sizes import estimate_bytes


def test_the_same_objects_hit_and_equal_copies_miss() -> None:
    memo: IdentityMemo[int] = IdentityMemo(4)
    made: list[int] = []

    def total(items: list[int]) -> int:
        made.append(sum(items))
        return sum(items)

    points = Held([1, 2, 3])
    assert memo.get((points,), lambda: total(points)) == 6
    assert memo.get((points,), lambda: total(points)) == 6
    copy = Held(points)
    assert memo.get((copy,), lambda: total(copy)) == 6
    assert memo.get((points,), lambda: -1, extra="other") == -1
    assert made == [6, 6]


def test_the_least_recently_used_entry_goes_first() -> None:
    memo: IdentityMemo[str] = IdentityMemo(2)
    first, second, third = Held([1]), Held([2]), Held([3])
    memo.put((first,), "first")
    memo.put((second,), "second")
    assert memo.get((first,), lambda: "again") == "first"  # now the newest
    memo.put((third,), "third")
    assert len(memo) == 2
    assert memo.get((second,), lambda: "made") == "made"
    assert memo.get((third,), lambda: "made") == "third"


def test_an_entry_goes_with_its_source_and_a_reused_id_never_hits() -> None:
    memo: IdentityMemo[str] = IdentityMemo(8)
    source = Held([0])
    memo.put((source,), "zero")
    assert len(memo) == 1
    del source
    gc.collect()
    assert len(memo) == 0  # the dropped list's data is not kept alive
    # New lists often take a freed list's address; none may find another's value.
    assert all(memo.get((Held([n]),), lambda: "new") == "new" for n in range(1000))


def test_sources_that_take_no_weak_reference_are_not_remembered() -> None:
    memo: IdentityMemo[int] = IdentityMemo(8)
    plain = [1, 2]
    calls: list[int] = []

    def make() -> int:
        calls.append(1)
        return len(calls)

    assert [memo.get((plain,), make) for _ in range(2)] == [1, 2]
    assert len(memo) == 0


def strings(items: list[int]) -> Held[str]:
    return Held(str(n) for n in items)


def lengths_of(words: list[str]) -> list[int]:
    return [len(word) for word in words]


class Account:
    """An `Owner` that only counts."""

    def __init__(self) -> None:
        self.nbytes = 0

    def charge(self, nbytes: int) -> None:
        self.nbytes += nbytes


def test_values_derived_from_an_owned_source_are_charged_to_it_and_given_back() -> None:
    decoded: IdentityMemo[Held[str]] = IdentityMemo(8)
    rolled: IdentityMemo[list[int]] = IdentityMemo(1)
    account = Account()
    source: Held[int] = Held(range(10**6, 10**6 + 500))
    source.owner = account
    words = decoded.get((source,), partial(strings, source))
    assert account.nbytes == estimate_bytes(words) > 500 * 50
    # What is derived from a derived value is charged to the same owner.
    lengths = rolled.get((words,), partial(lengths_of, words))
    assert account.nbytes == estimate_bytes(words) + estimate_bytes(lengths)
    rolled.put((Held(),), [])  # evicts `lengths` (size 1): its bytes come back
    assert account.nbytes == estimate_bytes(words)
    del source, words
    gc.collect()
    assert (len(decoded), account.nbytes) == (0, 0)


def test_a_value_remembered_before_its_source_was_kept_is_charged_on_its_next_hit() -> None:
    memo: IdentityMemo[list[str]] = IdentityMemo(8)
    source: Held[int] = Held(range(300, 400))
    memo.put((source,), [str(n) for n in source])
    account = Account()
    source.owner = account  # the cache keeps the list after the memo saw it
    assert account.nbytes == 0
    value = memo.get((source,), lambda: ["again"])
    assert value[0] == "300"
    assert account.nbytes == estimate_bytes(value)
    memo.get((source,), lambda: ["again"])
    assert account.nbytes == estimate_bytes(value)  # charged once
    memo.put((source,), ["new"])  # the value it replaces gives its bytes back
    assert account.nbytes == estimate_bytes(["new"])
