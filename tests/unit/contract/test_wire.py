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


@pytest.mark.parametrize(
    "data",
    [
        b'{"kind":"qmesh.todo.v1","id":"\\udcff"}',  # a lone surrogate, and fields missing
        b'{"kind":"qmesh.todo.v1","id":"\\udcff",',  # cut short after one
        b'{"kind":"qmesh.todo.v1","bogus":"\\ud83d\\ude00"}',  # a surrogate pair, unknown field
    ],
)
def test_arch_22_malformed_events_with_escapes_are_validation_errors(data: bytes) -> None:
    with pytest.raises(ValidationError):
        Todo.decode(data)


@pytest.mark.parametrize(
    "sender",
    ["joe@far.test", "j\u00f6rg@b\u00fccher.test", "\U0001f600@x.test", "j\udcffe@x.test"],
)
def test_arch_23_utf8_and_non_utf8_addresses_round_trip(sender: str) -> None:
    """UTF-8 (SMTPUTF8) addresses take pydantic-core's JSON, a non-UTF-8 one the escaped
    form; both read back to the same event, and the escaped form is read from ASCII text."""
    todo = Todo(
        id=QueueId("1732510000000.0123456789abcdef"),
        qp=1,
        envelope=Envelope(sender=sender, recipients=(sender,)),
        origin=Origin(kind="network"),
        size=1,
        queued_at=0.0,
    )
    data = todo.encode()
    assert Todo.decode(data) == todo
    escaped = data.replace("\U0001f600".encode(), b"\\ud83d\\ude00")
    assert Todo.decode(escaped) == todo
