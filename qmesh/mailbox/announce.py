"""Telling every imapd replica that an account's folders changed (IDLE, #13).

One core-NATS publish on ``qmesh.mailbox.<account-key>`` with an empty body: no stream keeps
it, so a missed announcement costs only IDLE latency (the next NOOP or command sees the
change). Never raises: a delivery must not fail because nobody could be told about it.
"""

from __future__ import annotations

import logging

from qmesh.bus.connection import NatsConnection
from qmesh.mailbox.names import announce_subject

log = logging.getLogger(__name__)


async def announce_change(bus: object, domain: str, account: str) -> None:
    """Publish the account's announcement if ``bus`` is a connected :class:`NatsConnection`."""
    if not isinstance(bus, NatsConnection) or not bus.connected:
        return
    try:
        await bus.nc.publish(announce_subject(domain, account), b"")
    except Exception as err:
        log.warning("mailbox.announce_failed", extra={"reason": repr(err)})
