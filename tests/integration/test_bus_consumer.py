"""The durable consumer against a real nats-server: in-progress acks keep a job (SEND-34), an
event is handed over as it arrives, whatever the batch a pull asked for, and a handler knows a
first delivery from a repeat (throughput #10)."""

from __future__ import annotations

import asyncio

import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.bus.consumer import first_delivery
from qmesh.bus.provision import ensure_consumer
from qmesh.bus.shunt import requeue_headers
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.contract.events import Todo
from qmesh.runtime.settings import Settings
from tests.integration.bus_events import todo, todo_consumer

pytestmark = pytest.mark.integration

ACK_WAIT = 1.0
DURABLE = subjects.CONSUMER_SEND_TODO


async def test_send_34_a_slow_handler_keeps_its_job_with_in_progress_acks(
    private_nats: NatsServer,
) -> None:
    """SEND-34: a handler running 3 x AckWait is not redelivered; it is acked once at the end."""
    conn = NatsConnection(Settings(nats_url=private_nats.url), "test-send-34")
    await conn.start()
    await ensure_consumer(  # the setup step's part (hardening #3), with a short AckWait
        conn.js, subjects.STREAM_TODO, DURABLE, max_ack_pending=2, ack_wait=ACK_WAIT
    )
    calls: list[str] = []
    done = asyncio.Event()

    async def handle(got: Todo) -> None:
        calls.append(got.id)
        await asyncio.sleep(3 * ACK_WAIT)
        done.set()

    consumer = todo_consumer(conn, handle, concurrency=2, ack_wait=ACK_WAIT)
    await consumer.start()
    await asyncio.wait_for(consumer.subscribed.wait(), 10)
    event = todo()
    await conn.js.publish(subjects.TODO, event.encode())
    await asyncio.wait_for(done.wait(), 10)
    await asyncio.sleep(2 * ACK_WAIT)  # a redelivery would have arrived by now
    info = await conn.js.consumer_info(subjects.STREAM_TODO, DURABLE)
    await consumer.stop()
    await conn.stop()
    assert calls == [event.id]
    assert info.num_redelivered == 0 and info.num_ack_pending == 0


@pytest.mark.parametrize("replicas", [1, 2])
async def test_an_event_reaching_a_waiting_pull_is_handed_over_at_once(
    private_nats: NatsServer, replicas: int
) -> None:
    """Throughput #10: a pull asks for eight events and may wait a minute for them. Events
    that come one by one are handled as they arrive, not when eight are in or the minute is
    up, also with two replicas on the durable (their pulls share the events)."""
    conn = NatsConnection(Settings(nats_url=private_nats.url), "test-pull")
    await conn.start()
    await ensure_consumer(conn.js, subjects.STREAM_TODO, DURABLE, max_ack_pending=16)
    handled: list[str] = []
    all_in = asyncio.Event()

    async def handle(got: Todo) -> None:
        handled.append(got.id)
        if len(handled) == 3:
            all_in.set()

    consumers = [
        todo_consumer(conn, handle, concurrency=8, max_ack_pending=16, fetch_wait=60.0)
        for _ in range(replicas)
    ]
    todos = [todo(n) for n in range(3)]
    try:
        for consumer in consumers:
            await consumer.start()
            await asyncio.wait_for(consumer.subscribed.wait(), 10)
        await asyncio.sleep(0.5)  # every replica's pull is waiting on the server now
        for event in todos:
            await conn.js.publish(subjects.TODO, event.encode())
            await asyncio.sleep(0.1)
        await asyncio.wait_for(all_in.wait(), 10)  # a held event would wait the minute
        info = await conn.js.consumer_info(subjects.STREAM_TODO, DURABLE)
    finally:
        for consumer in consumers:
            await consumer.stop()
        await conn.stop()
    assert sorted(handled) == [event.id for event in todos]
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_a_handler_tells_a_first_delivery_from_a_repeat_and_a_requeued_event(
    private_nats: NatsServer,
) -> None:
    """Throughput #10: a handler may leave out what only a repeat needs. It is told a first
    delivery only for an event JetStream has not delivered before and that no operator put back
    from the shunt (``qmesh queue requeue``); outside a handler the answer is no."""
    conn = NatsConnection(Settings(nats_url=private_nats.url), "test-first")
    await conn.start()
    await ensure_consumer(conn.js, subjects.STREAM_TODO, DURABLE, max_ack_pending=4)
    seen: list[tuple[str, bool]] = []
    done = asyncio.Event()

    async def handle(got: Todo) -> None:
        seen.append((got.id, first_delivery()))
        if len(seen) == 1:
            raise Temporary("once more, please")  # delivered again after the retry delay
        if len(seen) == 3:
            done.set()

    consumer = todo_consumer(conn, handle, concurrency=1, retry_delay=0.2)
    fresh, put_back = todo(0), todo(1)
    try:
        await consumer.start()
        await asyncio.wait_for(consumer.subscribed.wait(), 10)
        await conn.js.publish(subjects.TODO, fresh.encode())
        await asyncio.sleep(1.0)  # the first one is handled twice before the other comes
        await conn.js.publish(subjects.TODO, put_back.encode(), headers=requeue_headers(7))
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await consumer.stop()
        await conn.stop()
    assert seen == [(fresh.id, True), (fresh.id, False), (put_back.id, False)]
    assert first_delivery() is False
