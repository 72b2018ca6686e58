"""IdentityMemo: derived values remembered for the very same source objects only."""

from __future__ import annotations

from hub.memo import IdentityMemo


def test_the_same_objects_hit_and_equal_copies_miss() -> None:
    memo: IdentityMemo[int] = IdentityMemo(4)
    made: list[int] = []

    def total(items: list[int]) -> int:
        made.append(sum(items))
        return sum(items)

    points = [1, 2, 3]
    assert memo.get((points,), lambda: total(points)) == 6
    assert memo.get((points,), lambda: total(points)) == 6
    copy = list(points)
    assert memo.get((copy,), lambda: total(copy)) == 6
    assert memo.get((points,), lambda: -1, extra="other") == -1
    assert made == [6, 6]


def test_the_least_recently_used_entry_goes_first() -> None:
    memo: IdentityMemo[str] = IdentityMemo(2)
    first, second, third = [1], [2], [3]
    memo.put((first,), "first")
    memo.put((second,), "second")
    assert memo.get((first,), lambda: "again") == "first"  # now the newest
    memo.put((third,), "third")
    assert len(memo) == 2
    assert memo.get((second,), lambda: "made") == "made"
    assert memo.get((third,), lambda: "made") == "third"


def test_an_entry_holds_its_sources_so_their_ids_are_not_reused() -> None:
    memo: IdentityMemo[str] = IdentityMemo(8)
    memo.put(([0],), "zero")  # the list lives on in the entry only
    assert all(memo.get(([n],), lambda: "new") == "new" for n in range(1000))
