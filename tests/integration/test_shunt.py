"""Hardening #11: an event that always fails with a bug is shunted after a few deliveries,
not retried for ever (Mailman's shunt queue); ``qmesh queue shunted`` lists it and
``qmesh queue requeue`` puts it back, to be handled once the bug is gone."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.cli.main import parser
from qmesh.cli.natsd import NatsServer
from qmesh.cli.queueadmin import run_queue
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.contract.events import Todo
from qmesh.runtime.settings import Settings
from tests.integration.bus_events import todo, todo_consumer

pytestmark = pytest.mark.integration

QID = "1732510000123.0123456789abcdef"


def todo_event() -> Todo:
    return todo(0xEF)  # QID


async def queue_cli(url: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = parser().parse_args(["queue", *argv])
    code = await run_queue(args, environ={"QMESH_NATS_URL": url}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def wait_for(predicate: Callable[[], object]) -> None:
    for _ in range(300):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_hardening_11_poison_todo_is_shunted_listed_and_requeued(
    private_nats: NatsServer,
) -> None:
    conn = NatsConnection(Settings(nats_url=private_nats.url), "test-shunt")
    await conn.start()
    broken = True
    calls: list[int] = []
    handled: list[str] = []
    shunted: list[int] = []

    async def handle(todo: Todo) -> None:
        calls.append(1)
        if broken:
            raise RuntimeError("cannot handle this one")
        handled.append(todo.id)

    consumer = todo_consumer(
        conn,
        handle,
        concurrency=2,
        max_failures=3,
        bug_retry_delay=0.1,
        on_shunt=lambda: shunted.append(1),
    )
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.subscribed.wait(), 10)
        await conn.js.publish(subjects.TODO, todo_event().encode())
        await wait_for(lambda: shunted)
        await asyncio.sleep(1.0)  # a retry for ever would show more calls by now
        assert len(calls) == 3 and len(shunted) == 1
        todo = await conn.js.stream_info(subjects.STREAM_TODO)
        assert todo.state.messages == 0  # acknowledged: it no longer blocks or loops

        code, out, _ = await queue_cli(private_nats.url, "shunted")
        assert code == 0
        (line,) = out.splitlines()
        seq = line.split()[0]
        assert "qmesh.todo" in line and QID in line and "after 3 deliveries" in line
        assert "RuntimeError: cannot handle this one" in line

        broken = False
        code, out, _ = await queue_cli(private_nats.url, "requeue", seq)
        assert code == 0 and f"requeued {seq} to qmesh.todo" in out
        await wait_for(lambda: handled == [QID])
        code, out, _ = await queue_cli(private_nats.url, "shunted")
        assert out == "nothing shunted\n"
        code, _, err = await queue_cli(private_nats.url, "requeue", seq)
        assert code == 1 and "nothing shunted" in err
    finally:
        await consumer.stop()
        await conn.stop()


async def test_hardening_11_a_temporary_failure_is_never_shunted(private_nats: NatsServer) -> None:
    """Temporary trouble (NATS, S3 down) is retried as before, however often."""
    conn = NatsConnection(Settings(nats_url=private_nats.url), "test-shunt-temp")
    await conn.start()
    calls: list[int] = []

    async def handle(todo: Todo) -> None:
        calls.append(1)
        if len(calls) < 6:
            raise Temporary("store unavailable")

    consumer = todo_consumer(
        conn,
        handle,
        concurrency=1,
        max_failures=2,
        retry_delay=0.05,
    )
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.subscribed.wait(), 10)
        await conn.js.publish(subjects.TODO, todo_event().encode())
        await wait_for(lambda: len(calls) == 6)
        assert (await queue_cli(private_nats.url, "shunted"))[1] == "nothing shunted\n"
    finally:
        await consumer.stop()
        await conn.stop()
