"""ARCH-23: addresses are opaque byte strings that round-trip exactly through events."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from qmesh.contract.envelope import Envelope
from qmesh.contract.events import Origin, Todo
from qmesh.contract.ids import QueueId

ANY_BYTES = bytes(b for b in range(1, 256) if b != ord("@")).decode("utf-8", "surrogateescape")


def test_arch_23_every_byte_but_nul_round_trips() -> None:
    address = ANY_BYTES[:200] + "@x.test"
    todo = Todo(
        id=QueueId("1732510000000.0123456789abcdef"),
        qp=1,
        envelope=Envelope(sender=address, recipients=(address, "plain@x.test")),
        origin=Origin(kind="network"),
        size=1,
        queued_at=0.0,
    )
    back = Todo.decode(todo.encode())
    assert back == todo
    assert back.envelope.sender.encode("utf-8", "surrogateescape") == address.encode(
        "utf-8", "surrogateescape"
    )


@pytest.mark.parametrize("data", [b"{not json", b'{"kind": "qmesh.todo.v1"}', b"\xff\xfe"])
def test_arch_22_malformed_events_are_validation_errors(data: bytes) -> None:
    with pytest.raises(ValidationError):
        Todo.decode(data)
