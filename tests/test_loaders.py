"""Loader.load_all: keys loaded at once, shared with every caller of the same request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hub.loaders import LoadCancelled, Loader


class Source:
    """A fetch that records its calls and can be held open or made to fail."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: Exception | None = None

    async def __call__(self, keys: list[str]) -> dict[str, Any]:
        self.calls.append(list(keys))
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return {key: key.upper() for key in keys if key != "absent"}


async def test_keys_in_flight_are_fetched_once_for_concurrent_callers() -> None:
    source = Source()
    source.gate.clear()
    loader = Loader(source, None)
    first = asyncio.create_task(loader.load_all(["a", "b"]))
    await asyncio.sleep(0)
    second = asyncio.create_task(loader.load_all(["b", "c"]))
    one = asyncio.ensure_future(loader.load("a"))
    await asyncio.sleep(0)
    source.gate.set()
    assert await first == ["A", "B"]
    assert await second == ["B", "C"]
    assert await one == "A"
    assert source.calls == [["a", "b"], ["c"]]
    assert await loader.load_all(["a", "absent"]) == ["A", None]
    assert source.calls == [["a", "b"], ["c"], ["absent"]]


async def test_a_failed_fetch_is_not_remembered() -> None:
    source = Source()
    source.failure = RuntimeError("down")
    loader = Loader(source, None)
    (outcome,) = await loader.load_all(["a"])
    assert isinstance(outcome, RuntimeError)
    source.failure = None
    assert await loader.load_all(["a"]) == ["A"]
    assert await loader.load("a") == "A"
    assert source.calls == [["a"], ["a"]]


async def test_a_key_cleared_while_its_fetch_runs_keeps_nothing() -> None:
    source = Source()
    source.gate.clear()
    loader = Loader(source, None)
    task = asyncio.create_task(loader.load_all(["a"]))
    await asyncio.sleep(0)
    loader.clear("a")
    source.gate.set()
    assert await task == ["A"]
    assert await loader.load_all(["a"]) == ["A"]
    assert source.calls == [["a"], ["a"]]


async def test_a_key_held_by_load_and_cleared_meanwhile_still_answers() -> None:
    source = Source()
    source.gate.clear()
    loader = Loader(source, None)
    pending = asyncio.ensure_future(loader.load("a"))
    await asyncio.sleep(0)
    task = asyncio.create_task(loader.load_all(["a"]))
    await asyncio.sleep(0)
    loader.clear_all()
    source.gate.set()
    assert await task == ["A"]
    assert await pending == "A"


async def test_a_cancelled_load_all_leaves_no_waiter_hanging() -> None:
    source = Source()
    source.gate.clear()
    loader = Loader(source, None)
    task = asyncio.create_task(loader.load_all(["a"]))
    await asyncio.sleep(0)
    other = asyncio.create_task(loader.load_all(["a"]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    source.gate.set()
    (outcome,) = await asyncio.wait_for(other, 1)
    assert isinstance(outcome, LoadCancelled)
    assert await loader.load_all(["a"]) == ["A"]
