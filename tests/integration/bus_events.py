"""Events for the tests of the bus's consumer: the n-th todo of a test."""

from __future__ import annotations

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
