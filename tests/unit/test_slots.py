"""The in-flight slot pool: bounded, FIFO, chunk-sized grants, cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from sender.slots import SlotPool


async def test_take_grants_up_to_what_is_free() -> None:
    pool = SlotPool(10)
    assert await pool.take(4) == 4
    assert await pool.take(20) == 6
    assert pool.free == 0
    pool.give(3)
    assert await pool.take(5) == 3


async def test_waits_until_at_least_is_free_then_grants_more() -> None:
    pool = SlotPool(10)
    assert await pool.take(10) == 10
    waiter = asyncio.create_task(pool.take(8, at_least=4))
    await asyncio.sleep(0)
    pool.give(2)
    await asyncio.sleep(0)
    assert not waiter.done()
    pool.give(3)
    assert await waiter == 5
    assert pool.free == 0


async def test_waiters_are_served_in_order() -> None:
    pool = SlotPool(2)
    await pool.take(2)
    first = asyncio.create_task(pool.take(1))
    second = asyncio.create_task(pool.take(1))
    await asyncio.sleep(0)
    pool.give(1)
    await asyncio.sleep(0)
    assert first.done() and not second.done()
    pool.give(1)
    assert await second == 1
    await first


async def test_a_cancelled_waiter_leaks_nothing() -> None:
    pool = SlotPool(1)
    await pool.take(1)
    waiter = asyncio.create_task(pool.take(1))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    pool.give(1)
    assert await pool.take(1) == 1


async def test_capacity_is_never_exceeded() -> None:
    pool = SlotPool(3)
    pool.give(5)
    assert pool.free == 3
    with pytest.raises(ValueError):
        SlotPool(0)


async def test_a_woken_waiter_keeps_its_slots_when_a_newcomer_arrives_first() -> None:
    # The waiter is granted its slots when woken; a caller arriving before the waiter resumes
    # must queue behind, not take them (it once did, and the waiter came away with 0).
    pool = SlotPool(4)
    assert await pool.take(4) == 4
    waiter = asyncio.ensure_future(pool.take(4, at_least=2))
    await asyncio.sleep(0)
    pool.give(4)
    newcomer = asyncio.ensure_future(pool.take(4, at_least=1))
    assert await waiter == 4
    assert not newcomer.done()
    pool.give(4)
    assert await newcomer == 4
