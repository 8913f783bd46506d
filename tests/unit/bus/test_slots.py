"""A consumer's handler slots: the fetch loop takes every free slot at once and waits when
none is free, so at most ``concurrency`` handlers run (throughput #10: no acquire per slot)."""

from __future__ import annotations

import asyncio

from qmesh.bus.consumer import Slots


async def test_take_free_takes_every_free_slot_and_waits_for_a_release() -> None:
    slots = Slots(3)
    assert await slots.take_free() == 3
    waiting = asyncio.ensure_future(slots.take_free())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # none free: the fetch loop waits
    slots.release()
    slots.release(2)
    assert await waiting == 3  # both releases of that turn, taken together
    slots.release(0)  # a fetch that filled every slot gives nothing back
    waiting = asyncio.ensure_future(slots.take_free())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    slots.release()
    assert await waiting == 1
