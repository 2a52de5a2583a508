"""The worker's call slots are shared fairly between jobs (``worker/engine.FairSlots``)."""

from __future__ import annotations

import asyncio

import pytest

from humanizer.worker.engine import FairSlots

pytestmark = pytest.mark.unit


async def _take(slots: FairSlots, job: str, order: list[str], release: asyncio.Event) -> None:
    async with slots.hold(job):
        order.append(job)
        await release.wait()


def test_a_freed_slot_goes_to_the_job_with_the_fewest_running_calls() -> None:
    async def scenario() -> list[str]:
        slots, order, gate = FairSlots(2), [], asyncio.Event()
        big = [asyncio.create_task(_take(slots, "big", order, gate)) for _ in range(6)]
        await asyncio.sleep(0)
        small = [asyncio.create_task(_take(slots, "small", order, gate)) for _ in range(2)]
        await asyncio.sleep(0)
        assert order == ["big", "big"] and slots.free == 0
        gate.set()  # the holders finish one after another
        await asyncio.gather(*big, *small)
        return order

    order = asyncio.run(scenario())
    # first free slot: small (0 running) before big (1 running); then they alternate (1 each), while
    # first come first served would have given the small job the 7th and 8th slots
    assert order[:5] == ["big", "big", "small", "big", "small"], order
    assert order.count("big") == 6


def test_one_job_keeps_arrival_order_and_every_slot_comes_back() -> None:
    async def scenario() -> tuple[list[int], FairSlots]:
        slots, order = FairSlots(3), []

        async def call(i: int) -> None:
            async with slots.hold("job"):
                order.append(i)
                await asyncio.sleep(0.001 * (i % 3))

        await asyncio.gather(*(call(i) for i in range(20)))
        return order, slots

    order, slots = asyncio.run(scenario())
    assert sorted(order) == list(range(20)) and order[:3] == [0, 1, 2]
    assert slots.free == 3 and not slots.running and not slots.waiting


def test_a_cancelled_waiter_gives_up_its_place_and_leaks_no_slot() -> None:
    async def scenario() -> FairSlots:
        slots, gate, order = FairSlots(1), asyncio.Event(), []
        holder = asyncio.create_task(_take(slots, "a", order, gate))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(_take(slots, "b", order, gate))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.set()
        await holder
        assert order == ["a"]
        return slots

    slots = asyncio.run(scenario())
    assert slots.free == 1 and not slots.waiting and not slots.running
