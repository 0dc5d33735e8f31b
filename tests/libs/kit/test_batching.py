"""GroupCommit: single calls are grouped while a batch is in flight, answered in order."""

from __future__ import annotations

import asyncio

import pytest

from wamesh_kit.batching import Full, GroupCommit


async def test_an_idle_caller_goes_alone_and_a_busy_one_is_grouped() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        batches.append(items)
        await release.wait()
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(send, max_batch=3, max_in_flight=1)
    first = asyncio.create_task(group.submit(0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.submit(n)) for n in range(1, 6)]
    await asyncio.sleep(0)
    release.set()

    assert await first == 0
    assert await asyncio.gather(*rest) == [10, 20, 30, 40, 50]
    assert batches == [[0], [1, 2, 3], [4, 5]]


async def test_a_failed_batch_fails_each_of_its_items_and_no_other() -> None:
    async def send(items: list[int]) -> list[int]:
        if 13 in items:
            raise ConnectionError("down")
        return items

    group: GroupCommit[int, int] = GroupCommit(send, max_batch=2, max_in_flight=1)
    results = await asyncio.gather(
        *(group.submit(n) for n in (1, 13, 2, 3)), return_exceptions=True
    )

    assert results[0] == 1  # went alone while nothing was in flight
    assert isinstance(results[1], ConnectionError)
    assert isinstance(results[2], ConnectionError)  # shared the failed batch
    assert results[3] == 3


async def test_a_batch_must_answer_each_item() -> None:
    async def send(items: list[int]) -> list[int]:
        return items[:-1]

    group: GroupCommit[int, int] = GroupCommit(send)
    with pytest.raises(ValueError, match="0 results for 1 items"):
        await group.submit(1)


async def test_the_next_batch_leaves_before_the_returning_batchs_callers_wake() -> None:
    events: list[str] = []
    release_first = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        events.append(f"send {items}")
        if items == [0]:
            await release_first.wait()
        return items

    group: GroupCommit[int, int] = GroupCommit(send, max_in_flight=1)

    async def call(item: int) -> None:
        await group.submit(item)
        events.append(f"answered {item}")

    first = asyncio.create_task(call(0))
    await asyncio.sleep(0)
    second = asyncio.create_task(call(1))
    await asyncio.sleep(0)
    release_first.set()
    await asyncio.gather(first, second)

    # The store works on [1] while the caller of [0] answers its own caller.
    assert events == ["send [0]", "send [1]", "answered 0", "answered 1"]


async def test_an_item_given_up_while_waiting_is_never_sent() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        batches.append(items)
        await release.wait()
        return items

    group: GroupCommit[int, int] = GroupCommit(send, max_in_flight=1)
    in_flight = asyncio.create_task(group.submit(1, timeout_s=0.05))
    await asyncio.sleep(0)
    patient = asyncio.create_task(group.submit(2))
    impatient = asyncio.create_task(group.submit(3, timeout_s=0.05))

    with pytest.raises(TimeoutError):
        await impatient
    with pytest.raises(TimeoutError):
        await in_flight  # given up on, though its batch is still on the wire
    release.set()

    assert await patient == 2
    assert batches == [[1], [2]]


async def test_beyond_max_waiting_a_submit_is_refused_at_once() -> None:
    release = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        await release.wait()
        return items

    group: GroupCommit[int, int] = GroupCommit(send, max_in_flight=1, max_waiting=2)
    in_flight = asyncio.create_task(group.submit(0))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(group.submit(n)) for n in (1, 2)]
    await asyncio.sleep(0)

    with pytest.raises(Full):
        await group.submit(3)
    release.set()
    assert [await in_flight, *await asyncio.gather(*waiting)] == [0, 1, 2]
    assert await group.submit(4) == 4  # room again
