"""send's timer: order of due messages, retry after internal failures, the sweep."""

from __future__ import annotations

import asyncio

from services.send.schedule import SWEEP_INTERVAL, Timer


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_send_23_due_messages_are_served_first_due_first() -> None:
    clock = Clock(1000.0)
    timer = Timer(sweep_interval=3600.0, clock=clock, concurrency=1)
    seen: list[str] = []

    async def attend(qid: str) -> None:
        seen.append(qid)

    async def sweep() -> list[str]:
        return []

    timer.bind(attend, sweep)
    for qid, due in (("c", 990.0), ("a", 970.0), ("d", 1001.0), ("b", 980.0)):
        timer.wake(qid, due)
    await timer.start()
    await settle()
    await timer.stop()
    assert seen == ["a", "b", "c"]  # d is not due yet


async def test_send_32_a_failed_attempt_is_retried_after_about_2_minutes() -> None:
    clock = Clock(1000.0)
    timer = Timer(sweep_interval=3600.0, clock=clock)
    calls: list[tuple[str, float]] = []

    async def attend(qid: str) -> None:
        calls.append((qid, clock.now))
        if qid == "m" and len([c for c in calls if c[0] == "m"]) == 1:
            raise OSError("state store unreachable")

    async def sweep() -> list[str]:
        return []

    timer.bind(attend, sweep)
    timer.wake("m", 1000.0)
    await timer.start()
    await settle()
    clock.now = 1119.0
    timer.wake("poke1", 0.0)  # wakes the timer loop at the new time
    await settle()
    assert [c for c in calls if c[0] == "m"] == [("m", 1000.0)]  # not dropped, not yet due
    clock.now = 1121.0
    timer.wake("poke2", 0.0)
    await settle()
    await timer.stop()
    assert [c for c in calls if c[0] == "m"] == [("m", 1000.0), ("m", 1121.0)]


async def test_arch_08_sweep_at_start_and_at_most_every_25_minutes() -> None:
    assert SWEEP_INTERVAL <= 1500
    clock = Clock(1000.0)
    timer = Timer(sweep_interval=1500.0, clock=clock)
    seen: list[str] = []
    sweeps: list[float] = []

    async def attend(qid: str) -> None:
        seen.append(qid)

    async def sweep() -> list[str]:
        sweeps.append(clock.now)
        return ["forgotten"]

    timer.bind(attend, sweep)
    await timer.start()
    await settle()
    assert sweeps == [1000.0] and seen == ["forgotten"]
    clock.now = 2500.0
    timer.wake("poke", 0.0)
    await settle()
    await timer.stop()
    assert sweeps == [1000.0, 2500.0] and seen.count("forgotten") == 2
