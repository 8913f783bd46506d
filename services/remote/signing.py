"""DKIM signing of outgoing mail (RFC 6376, RFC 8463): remote's adapter over :mod:`qmesh.dkim`.

Before the first connection, the message is signed with the active selectors of its
``From:`` domain, or else of its envelope sender's domain (:func:`qmesh.dkim.sign.choose_signers`);
a message of a domain without keys goes out unchanged. The signature fields are put in front
of the stored form, so SIZE, QMTP lengths and every retry see the signed message. The stored
form's line breaks are normalised as they go on the wire (REMOTE-36) before it is signed, so
the signature covers what the next hop receives.

Signing never stops a delivery: a message too large to hold (:data:`MAX_SIGN_BYTES`) or one
dkimpy refuses goes out unsigned, logged and counted. The CPU work runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging

from qmesh.contract.ids import QueueId
from qmesh.dkim.keyring import Keys
from qmesh.dkim.sign import SignError, choose_signers, signatures
from services.remote import metrics
from services.remote.message import Message

log = logging.getLogger(__name__)

MAX_SIGN_BYTES = 64 << 20


def wire_lines(stored: bytes) -> bytes:
    """The stored form with every line break as LF, as :mod:`services.remote.encode` sends it."""
    return stored.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


class Signer:
    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    async def sign(self, message: Message, sender: str, msg_id: QueueId) -> Message:
        """``message`` with its DKIM-Signature fields, or unchanged when it is not signed."""
        if not self._keys.current():
            return message
        content = await message.content(MAX_SIGN_BYTES)
        if content is None:
            metrics.DKIM.labels("too_large").inc()
            log.warning("dkim.too_large", extra={"msg_id": msg_id, "size": message.size})
            return message
        text = wire_lines(content)
        selectors = choose_signers(text, sender, self._keys.signers)
        if not selectors:
            metrics.DKIM.labels("no_key").inc()
            return message
        try:
            fields = await asyncio.to_thread(signatures, text, selectors)
        except SignError as err:
            metrics.DKIM.labels("error").inc()
            log.warning("dkim.sign_failed", extra={"msg_id": msg_id, "reason": str(err)[:300]})
            return message
        metrics.DKIM.labels("signed").inc()
        log.debug(
            "dkim.signed",
            extra={
                "msg_id": msg_id,
                "domain": selectors[0].domain,
                "selectors": [s.selector for s in selectors],
            },
        )
        return message.with_prefix(fields)
