"""Per-message queue state (ARCH-04, ARCH-07, ARCH-12): one record ``msg.<id>`` in KV
``qmesh_queue``, written compare-and-set so every transition is one durable write.

The record holds qmail's ``info`` (sender, birth time, origin, qp, size), the ``local`` and
``remote`` recipient lists with their DONE flags, the next-attempt time and the pass in flight
per channel, and the bounce record (failures not yet reported).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from qmesh.contract import wire
from qmesh.contract.envelope import Address
from qmesh.contract.events import Origin, Qp, QueueIdField
from qmesh.contract.subjects import Channel


class Recipient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    channel: Channel
    address: Address  # after SEND-10..13: what the delivery uses
    original: Address  # before SEND-13: what a bounce shows (BOUNCE-07)
    namespace: str | None = None  # local recipients (SEND-16)
    done: bool = False
    attempts: int = 0
    last_report: str = ""


class Failure(BaseModel):
    """One line of the bounce record: a permanent failure not yet reported (SEND-30)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    address: Address
    report: str
    remote_host: str | None = None
    at: float
    expired: bool = False  # produced by the lifetime rule (BOUNCE-21)


class Pass(BaseModel):
    """A delivery pass of one channel (SEND-22): its attempt number and who is in flight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt: int = 0
    started: float = 0.0
    inflight: tuple[int, ...] = ()
    final: bool = False
    next_at: float | None = None  # when the next pass is due (SEND-20); None: nothing to do


class MessageState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["qmesh.queue.message.v1"] = "qmesh.queue.message.v1"
    id: QueueIdField
    qp: Qp
    sender: Address
    birth: float
    origin: Origin
    size: int
    smtputf8: bool = False
    recipients: tuple[Recipient, ...]
    passes: dict[Channel, Pass] = Field(default_factory=dict)
    bounces: tuple[Failure, ...] = ()
    bounced: int = 0  # how many bounces have been injected for this message

    def encode(self) -> bytes:
        return wire.dumps(self)

    @classmethod
    def decode(cls, data: bytes) -> MessageState:
        return wire.loads(cls, data)

    def pending(self, channel: Channel) -> tuple[Recipient, ...]:
        return tuple(r for r in self.recipients if r.channel == channel and not r.done)

    def pass_of(self, channel: Channel) -> Pass:
        return self.passes.get(channel, Pass())

    @property
    def complete(self) -> bool:
        return all(r.done for r in self.recipients)

    @property
    def idle(self) -> bool:
        """No delivery of this message is in flight on any channel (BOUNCE-01)."""
        return all(not p.inflight for p in self.passes.values())


def state_key(qid: str) -> str:
    return f"msg.{qid}"
