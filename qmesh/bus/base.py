"""The Publisher port: what domain code needs from JetStream to publish an event."""

from __future__ import annotations

from typing import Protocol

from qmesh.contract.errors import Temporary


class PublishFailed(Temporary):
    """JetStream did not acknowledge the publish (no PubAck, timeout, no connection)."""


class Publisher(Protocol):
    async def publish(self, subject: str, payload: bytes, *, msg_id: str) -> None:
        """Publish with ``Nats-Msg-Id: msg_id`` and return after the PubAck (ARCH-09).

        Raise :class:`PublishFailed` if the stream did not acknowledge it.
        """
        ...
