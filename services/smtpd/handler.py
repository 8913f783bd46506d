"""The aiosmtpd handler: translates SMTP commands to policy and enqueue() calls, nothing more.

Replies follow qmail's texts (spec 4.11) with MODERN enhanced codes where the spec gives them.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qmesh.bus.base import Publisher
from qmesh.contract.errors import QueueFailure, Temporary
from qmesh.contract.events import Origin
from qmesh.contract.queue import enqueue
from qmesh.directory.domains import DirectoryDomains
from qmesh.store.base import BlobStore
from services.smtpd import metrics
from services.smtpd.policy import RelayPolicy, check_rcpt
from services.smtpd.received import has_bare_line_end, received_line, stored_form

log = logging.getLogger(__name__)

BARE_LF = "451 See https://cr.yp.to/docs/smtplf.html."
TOO_BIG = "552 sorry, that message size exceeds my databytes limit (#5.3.4)"
LOOKUP_FAILED = "451 4.3.0 temporary recipient lookup failure"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SmtpdConfig:
    greeting: str
    localname: str
    relay: RelayPolicy
    relayclients: tuple[tuple[IPNetwork, str], ...]
    databytes: int

    def relayclient(self, ip: str) -> str | None:
        """RELAYCLIENT for a client address from ``relayclients`` (CTL table), else ``None``."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        for network, value in self.relayclients:
            if addr.version == network.version and addr in network:
                return value
        return None


class SmtpHandler:
    def __init__(
        self,
        *,
        blobs: BlobStore,
        bus: Publisher,
        config: Callable[[], SmtpdConfig],
        domains: DirectoryDomains,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._blobs = blobs
        self._bus = bus
        self._config = config
        self._domains = domains
        self._clock = clock

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        config = self._config()
        try:
            names = self._domains.names
        except Temporary:
            metrics.RECIPIENTS.labels("deferred").inc()
            return LOOKUP_FAILED
        verdict = check_rcpt(
            address,
            policy=config.relay,
            relayclient=config.relayclient(_peer_ip(session)),
            directory_domains=names,
        )
        metrics.RECIPIENTS.labels("accepted" if verdict.accepted else "rejected").inc()
        if verdict.accepted:
            envelope.rcpt_tos.append(verdict.address)
        else:
            log.info(
                "smtpd.rejected",
                extra={"stage": "rcpt", "reply": verdict.reply[:3], "remote": _peer_ip(session)},
            )
        return verdict.reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        config = self._config()
        data: bytes = envelope.original_content or b""
        if has_bare_line_end(data):
            metrics.MESSAGES.labels("rejected").inc()
            return BARE_LF
        body = stored_form(data)
        if config.databytes and len(body) > config.databytes:
            metrics.MESSAGES.labels("rejected").inc()
            return TOO_BIG
        ip = _peer_ip(session)
        now = self._clock()
        trace = received_line(
            remotehost="unknown",
            helo=session.host_name,
            remoteip=ip,
            localname=config.localname,
            proto="ESMTP" if session.extended_smtp else "SMTP",
            when=now,
        )
        started = time.monotonic()
        try:
            queued = await enqueue(
                self._blobs,
                self._bus,
                sender=envelope.mail_from or "",
                recipients=envelope.rcpt_tos,
                body=trace + body,
                origin=Origin(kind="network", client_ip=ip),
            )
        except QueueFailure as err:
            metrics.MESSAGES.labels("rejected" if err.permanent else "deferred").inc()
            log.warning("smtpd.enqueue_failed", extra={"reason": err.text, "remote": ip})
            return ("554 " if err.permanent else "451 ") + err.text
        metrics.ENQUEUE_SECONDS.observe(time.monotonic() - started)
        metrics.MESSAGES.labels("accepted").inc()
        metrics.BYTES.inc(queued.size)
        log.info(
            "smtpd.accepted",
            extra={
                "msg_id": queued.id,
                "qp": queued.qp,
                "remote": ip,
                "size": queued.size,
                "rcpt_count": len(envelope.rcpt_tos),
            },
        )
        return f"250 ok {int(queued.at)} qp {queued.qp}"


def _peer_ip(session: Any) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unknown"
