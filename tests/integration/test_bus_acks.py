"""Acks that are not waited for (throughput #10) still settle exactly the events they name: a
consumer killed with one event unfinished leaves that one, and only that one, to be delivered
again (SEND-34, ARCH-02), against a real nats-server and a real process killed with SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.bus.consumer import Consumer
from qmesh.bus.provision import ensure_consumer
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.contract.events import Todo
from qmesh.runtime.settings import Settings
from tests.integration.bus_events import todo

pytestmark = pytest.mark.integration

ACK_WAIT = 1.0
DURABLE = subjects.CONSUMER_SEND_TODO

# A consumer in a process of its own: it prints each event it starts and never finishes STUCK.
CHILD = """
import asyncio, sys
from qmesh.bus.connection import NatsConnection
from qmesh.bus.consumer import Consumer
from qmesh.contract import subjects
from qmesh.contract.events import Todo
from qmesh.runtime.settings import Settings

async def main(url: str, stuck: str) -> None:
    conn = NatsConnection(Settings(nats_url=url), "test-acks-child")
    await conn.start()

    async def handle(todo: Todo) -> None:
        sys.stdout.write(todo.id + "\\n")
        sys.stdout.flush()
        if todo.id == stuck:
            await asyncio.Event().wait()

    consumer = Consumer(conn, stream=subjects.STREAM_TODO, durable=subjects.CONSUMER_SEND_TODO,
                        event=Todo, handle=handle, concurrency=8, ack_wait=1.0)
    await consumer.start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_arch_02_a_killed_consumer_leaves_only_its_unfinished_event(
    private_nats: NatsServer,
) -> None:
    conn = NatsConnection(Settings(nats_url=private_nats.url), "test-acks")
    await conn.start()
    await ensure_consumer(
        conn.js, subjects.STREAM_TODO, DURABLE, max_ack_pending=8, ack_wait=ACK_WAIT
    )
    events = [todo(n) for n in range(6)]
    stuck = events[3].id
    for event in events:
        await conn.js.publish(subjects.TODO, event.encode())

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, private_nats.url, stuck, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        started: set[str] = set()
        while len(started) < len(events):
            line = await asyncio.wait_for(child.stdout.readline(), 20)
            started.add(line.decode().strip())
        assert started == {e.id for e in events}
        deadline = time.monotonic() + 10
        while True:  # the five acks, sent without waiting, have reached the server
            info = await conn.js.consumer_info(subjects.STREAM_TODO, DURABLE)
            if info.num_ack_pending == 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert info.num_ack_pending == 1
        await asyncio.sleep(2 * ACK_WAIT)  # in-progress acks keep the stuck one (SEND-34)
        info = await conn.js.consumer_info(subjects.STREAM_TODO, DURABLE)
        assert info.num_redelivered == 0
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()

    again: list[str] = []
    arrived = asyncio.Event()

    async def handle(event: Todo) -> None:
        again.append(event.id)
        arrived.set()

    consumer = Consumer(
        conn,
        stream=subjects.STREAM_TODO,
        durable=DURABLE,
        event=Todo,
        handle=handle,
        concurrency=8,
        ack_wait=ACK_WAIT,
    )
    await consumer.start()
    try:
        await asyncio.wait_for(arrived.wait(), 10)
        await asyncio.sleep(2 * ACK_WAIT)  # anything else would have come by now
        info = await conn.js.consumer_info(subjects.STREAM_TODO, DURABLE)
        stream = await conn.js.stream_info(subjects.STREAM_TODO)
    finally:
        await consumer.stop()
        await conn.stop()
    assert again == [stuck]
    assert info.num_ack_pending == 0 and stream.state.messages == 0
