"""Events for the tests of the bus's consumer: the n-th todo of a test, and a consumer of todos
on send's durable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from qmesh.bus.connection import NatsConnection
from qmesh.bus.consumer import Consumer
from qmesh.contract import subjects
from qmesh.contract.envelope import Envelope
from qmesh.contract.events import Origin, Todo


def todo(n: int = 0) -> Todo:
    return Todo(
        id=f"1732510000123.0123456789abcd{n:02x}",
        qp=4711 + n,
        envelope=Envelope(sender="joe@far.test", recipients=("a@example.test",)),
        origin=Origin(kind="inject"),
        size=1,
        queued_at=0.0,
    )


def todo_consumer(
    conn: NatsConnection, handle: Callable[[Todo], Awaitable[None]], **options: Any
) -> Consumer[Todo]:
    """A consumer of ``QMESH_TODO`` on send's durable, as send's own is made."""
    return Consumer(
        conn,
        stream=subjects.STREAM_TODO,
        durable=subjects.CONSUMER_SEND_TODO,
        event=Todo,
        handle=handle,
        **options,
    )
