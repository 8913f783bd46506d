"""ARC sealing of forwarded mail (RFC 8617): remote's adapter over :mod:`qmesh.dkim.arc`.

After DKIM signing and before the first connection, a message that came in through our door
(an ``Authentication-Results:`` with our authserv-id, the ``me`` control) and was forwarded
here (a ``Delivered-To:`` line above it, written by local or the list service) is sealed by the
forwarding address's domain when ``domainkeys/`` holds an RSA key for it. The new set goes in
front of everything, DKIM-Signature included, so SIZE, QMTP lengths and every retry see it.

Sealing never stops a delivery: a message too large to hold, or one dkimpy refuses, goes out
unsealed, logged and counted. The CPU work runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging

from qmesh.contract.ids import QueueId
from qmesh.control.values import Controls
from qmesh.dkim.arc import SealError, decide, fields, seal
from qmesh.dkim.keyring import Keys
from qmesh.dkim.sign import MAX_HEADER_BYTES
from services.remote import metrics
from services.remote.message import Message
from services.remote.signing import MAX_SIGN_BYTES, wire_lines

log = logging.getLogger(__name__)


def authserv_id(c: Controls) -> str | None:
    """This system's authserv-id (RFC 8601 section 2.5), the one smtpd writes: ``me``."""
    return c.me.lower() if c.me else None


class Sealer:
    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    async def seal(self, message: Message, srv_id: str | None, msg_id: QueueId) -> Message:
        """``message`` with a new ARC set in front, or unchanged when it is not sealed."""
        ring = self._keys.current()
        if not ring or not srv_id:
            return message
        head = message.prefix + wire_lines(await message.head(MAX_HEADER_BYTES))
        try:
            decision = decide(fields(head), srv_id, self._keys.signers)
            if decision.selector is None:  # decided on the header: a large body is not read
                metrics.ARC.labels(decision.reason).inc()
                return message
            content = await message.content(MAX_SIGN_BYTES)
            if content is None:
                metrics.ARC.labels("too_large").inc()
                log.warning("arc.too_large", extra={"msg_id": msg_id, "size": message.size})
                return message
            text = message.prefix + wire_lines(content)
            made = await asyncio.to_thread(seal, text, decision, srv_id)
        except SealError as err:
            metrics.ARC.labels("error").inc()
            log.warning("arc.seal_failed", extra={"msg_id": msg_id, "reason": str(err)[:300]})
            return message
        except Exception:  # a bug here must not hold the message: it leaves unsealed
            metrics.ARC.labels("error").inc()
            log.exception("arc.bug", extra={"msg_id": msg_id})
            return message
        metrics.ARC.labels(f"sealed_cv_{decision.cv}").inc()
        log.info(
            "arc.sealed",
            extra={
                "msg_id": msg_id,
                "domain": decision.domain,
                "instance": decision.instance,
                "cv": decision.cv,
            },
        )
        return message.with_prefix(made)
