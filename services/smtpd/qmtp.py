"""The QMTP server (QMTP-01..05, QMTP-10..17): packages in, one K/Z/D netstring per recipient.

:func:`decide` decides a whole package (no sockets): the stored form (QMTP-11), sender and
recipient checks as for SMTP (QMTP-12, QMTP-13), size and hops (QMTP-14, QMTP-17), the
defences of SMTP (DNS blocklists, rates, content filter: defences #12), the checks at the door
of SMTP (SPF, DKIM, DMARC, ARC and ``dmarcreject``, issue 11), and one enqueue for all
acceptable recipients (QMTP-15); an incoming ``Authentication-Results:`` claiming our
authserv-id, or an ``X-Qmesh-Quarantine:``, is removed as on SMTP, whoever the client.
:func:`read_package` reads a package off a connection with the framing rules of QMTP-10; any
framing error closes the connection. The
message is read in pieces into a :class:`~services.smtpd.spool.Spool`, converted to stored form
and counted on the way, so a package of any size costs a bounded amount of memory and one over
``databytes`` is never kept, whatever its encoding (SMTPD-73, QMTP-14).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Container
from dataclasses import dataclass
from typing import Protocol

from qmesh.contract.envelope import has_control
from qmesh.contract.errors import QueueFailure
from qmesh.contract.events import Origin
from qmesh.contract.queue import Queued
from services.smtpd import data as smtp_data
from services.smtpd import replies
from services.smtpd.authresults import without_our_claims
from services.smtpd.config import SmtpdConfig
from services.smtpd.data import MAX_HOPS, HopCounter, count_hops
from services.smtpd.policy import sender_is_bad
from services.smtpd.received import received_line
from services.smtpd.recipients import RecipientCheck, judge_recipient
from services.smtpd.session import Queue
from services.smtpd.spool import CHUNK, Spool
from services.smtpd.verdict import Verdict

MAX_PACKAGE = 200_000_000  # QMTP-10
MAX_ENVELOPE = 1 << 20  # sender and recipient netstrings; a real one is far smaller
SESSION_LIMIT = 3600.0  # QMTP-01

UNACCEPTABLE_SENDER = Verdict.qq(553, "unacceptable sender (#5.1.7)")
UNACCEPTABLE_RECIPIENT = Verdict.qq(553, "sorry, I can't handle that recipient (#5.1.3)")
BAD_SENDER = UNACCEPTABLE_SENDER.qmtp()
BAD_RECIPIENT = UNACCEPTABLE_RECIPIENT.qmtp()
TOO_BIG = smtp_data.TOO_BIG.qmtp()
LOOPING = smtp_data.LOOPING.qmtp()
NUL = smtp_data.NUL.qmtp()
BADMAILFROM = replies.BADMAILFROM.qmtp()


class Defences(Protocol):
    """The checks smtpd's SMTP path makes, for QMTP too (:class:`~services.smtpd.session.
    Session`): DNS blocklists asked at connect, the cluster-wide rates, the checks at the door
    (SPF, DKIM, DMARC, ARC), the content filter."""

    async def listing(self) -> Verdict | None: ...

    async def within_rates(self, recipients: int) -> bool: ...

    async def door(
        self, sender: str, message: AsyncIterable[bytes], size: int
    ) -> bytes | Verdict: ...

    async def content(
        self,
        sender: str,
        recipients: list[str],
        message: AsyncIterator[bytes],
        size: int,
        trace: bytes,
    ) -> bytes | Verdict: ...


class Framing(Exception):
    """QMTP-10: the connection is closed; nothing of this package is queued."""


Read = Callable[[int], Awaitable[bytes]]  # exactly n bytes, or Framing at the end


@dataclass(frozen=True, slots=True)
class Package:
    """One package. Off a connection the stored form is in ``spool`` and ``message`` is empty;
    a package built whole (in tests) carries its encoded ``message`` instead."""

    message: bytes  # the encoded message, first byte included, when held whole
    size: int  # the stored-form size (exact when read, announced when skipped)
    sender: bytes
    recipients: list[bytes]
    spool: Spool | None = None  # the stored form, kept only while within databytes
    hops: int = 0  # counted while reading into ``spool``
    nul: bool = False  # a NUL byte was read into ``spool`` (hardening #5)

    def hop_count(self) -> int:
        return self.hops if self.spool is not None else count_hops(stored_form(self.message))

    def has_nul(self) -> bool:
        return self.nul if self.spool is not None else b"\0" in self.message

    def stored(self, head: bytes) -> AsyncIterator[bytes]:
        """``head`` and the stored form in chunks (for ``enqueue()``)."""
        if self.spool is not None:
            return self.spool.chunks(head)
        return _once(head + stored_form(self.message))

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


async def _length(read: Read, limit: int) -> int:
    digits = b""
    while True:
        byte = await read(1)
        if byte == b":":
            break
        if not byte.isdigit() or len(digits) > 9:
            raise Framing("bad netstring length")
        digits += byte
    if not digits or int(digits) > limit:
        raise Framing("netstring length missing or too large")
    return int(digits)


async def _netstring(read: Read, limit: int) -> bytes:
    data = await read(await _length(read, limit))
    if await read(1) != b",":
        raise Framing("netstring without its comma")
    return data


def stored_form(encoded: bytes) -> bytes:
    """QMTP-11: CR-encoding turns each CR LF into LF (a lone CR stays); LF-encoding is as is."""
    if encoded[:1] == b"\r":
        return encoded[1:].replace(b"\r\n", b"\n")
    return encoded[1:]


class CrDecoder:
    """QMTP-11 for a CR-encoded message read in pieces: CR LF becomes LF, a lone CR stays."""

    def __init__(self) -> None:
        self._cr = False  # the last piece ended in a CR whose LF may come next

    def feed(self, piece: bytes) -> bytes:
        if self._cr:
            piece = b"\r" + piece
        self._cr = piece.endswith(b"\r")
        if self._cr:
            piece = piece[:-1]
        return piece.replace(b"\r\n", b"\n")

    def end(self) -> bytes:
        return b"\r" if self._cr else b""


async def _read_message(read: Read, first: bytes, length: int, databytes: int) -> Package:
    """Read ``length`` encoded bytes in pieces into a spool; past databytes keep nothing."""
    spool = Spool()
    hops = HopCounter()
    decoder = CrDecoder() if first == b"\r" else None
    size = 0
    nul = False

    async def keep(stored: bytes) -> None:
        nonlocal size, nul
        size += len(stored)
        if databytes and size > databytes:
            spool.discard()  # QMTP-14: counted to the end, never kept
            return
        nul = nul or b"\0" in stored
        hops.feed(stored)
        await spool.write(stored)

    try:
        left = length
        while left > 0:
            piece = await read(min(CHUNK, left))
            left -= len(piece)
            await keep(decoder.feed(piece) if decoder is not None else piece)
        if decoder is not None:
            await keep(decoder.end())
    except BaseException:
        spool.close()
        raise
    if databytes and size > databytes:
        spool.close()
        return Package(b"", size, b"", [])
    return Package(b"", size, b"", [], spool=spool, hops=hops.end(), nul=nul)


async def read_package(
    read: Read, skip: Callable[[int], Awaitable[None]], databytes: int
) -> Package:
    """One package; the message is spooled, and one over ``databytes`` is not kept (QMTP-14)."""
    length = await _length(read, MAX_PACKAGE)
    if length == 0:
        raise Framing("empty message")
    first = await read(1)
    if first not in (b"\n", b"\r"):
        raise Framing("message is neither LF- nor CR-encoded")
    announced = length - 1
    if databytes and announced > databytes and first == b"\n":
        await skip(announced)  # LF-encoded: the announced length is the stored size
        message = Package(b"", announced, b"", [])
    else:
        message = await _read_message(read, first, announced, databytes)
    try:
        if await read(1) != b",":
            raise Framing("message netstring without its comma")
        sender = await _netstring(read, MAX_ENVELOPE)
        listing = await _netstring(read, MAX_ENVELOPE)
        recipients = []
        position = 0
        while position < len(listing):
            colon = listing.find(b":", position)
            if colon < 0 or not listing[position:colon].isdigit():
                raise Framing("bad recipient netstring")
            end = colon + 1 + int(listing[position:colon])
            if end >= len(listing) or listing[end : end + 1] != b",":
                raise Framing("bad recipient netstring")
            recipients.append(listing[colon + 1 : end])
            position = end + 1
    except BaseException:
        message.close()
        raise
    return Package(
        b"",
        message.size,
        sender,
        recipients,
        spool=message.spool,
        hops=message.hops,
        nul=message.nul,
    )


async def decide(
    package: Package,
    *,
    config: SmtpdConfig,
    client_ip: str,
    relayclient: str | None,
    domains: Callable[[], Container[str]],
    rcptcheck: RecipientCheck,
    queue: Queue,
    defences: Defences | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[list[Verdict], Queued | None]:
    """One verdict per recipient, in order (QMTP-05), and what was queued; the verdicts are
    formatted once, by :meth:`Verdict.qmtp`, where they are written."""
    n = len(package.recipients)
    sender = package.sender.decode("utf-8", "surrogateescape")
    if len(package.sender) >= 1000 or has_control(sender):
        return [UNACCEPTABLE_SENDER] * n, None  # QMTP-12; any control character (hardening #4)
    if config.databytes and package.size > config.databytes:
        return [smtp_data.TOO_BIG] * n, None  # QMTP-14
    listing = None if defences is None else await defences.listing()
    if listing is not None:
        return [listing] * n, None  # a listed client may not send (rblsmtpd, defences #12)
    responses: list[Verdict | None] = []
    accepted: list[str] = []
    bad_sender = sender_is_bad(sender, config.badmailfrom)
    for raw in package.recipients:
        address = raw.decode("utf-8", "surrogateescape")
        if len(raw) + len(relayclient or "") >= 1000 or has_control(address):
            responses.append(
                UNACCEPTABLE_RECIPIENT
            )  # QMTP-13; any control character (hardening #4)
            continue
        if bad_sender:
            responses.append(replies.BADMAILFROM)  # SMTPD-35 also applies (QMTP-13)
            continue
        accepted_as, verdict = await judge_recipient(
            address,
            config=config,
            relayclient=relayclient,
            domains=domains,
            rcptcheck=rcptcheck,
        )
        if accepted_as is None:
            responses.append(verdict)
        else:
            responses.append(None)
            accepted.append(accepted_as)
    if not accepted:
        return [r for r in responses if r is not None], None
    queued: Queued | None = None
    outcome = _refusal(package)
    if outcome is None and defences is not None and not await defences.within_rates(len(accepted)):
        outcome = replies.TOO_MANY_MESSAGES  # clientmessages, clientrecipients (defences #12)
    if outcome is None:
        trace = received_line(
            remotehost="unknown",
            helo=None,  # QMTP-16
            remoteip=client_ip,
            localname=config.localname,
            proto="QMTP",
            when=clock(),
        )
        results: bytes | Verdict = b""
        head: bytes | Verdict = trace
        if defences is not None:  # the checks at the door, then the content filter (Rspamd)
            results = await defences.door(sender, package.stored(b""), package.size)
            if not isinstance(results, Verdict):
                size = len(trace) + package.size
                head = await defences.content(sender, accepted, package.stored(trace), size, trace)
        if isinstance(results, Verdict):
            outcome = results
        elif isinstance(head, Verdict):
            outcome = head
        else:
            origin = Origin(kind="network", client_ip=client_ip)
            body = without_our_claims(results + head, package.stored(b""), config.localname)
            try:
                queued = await queue.enqueue(sender, accepted, body, origin, False)
                outcome = replies.accepted(queued.at, queued.qp)
            except QueueFailure as err:
                outcome = replies.queue_failure(err.text, err.permanent)
    return [r if r is not None else outcome for r in responses], queued


def _refusal(package: Package) -> Verdict | None:
    if package.hop_count() >= MAX_HOPS:
        return smtp_data.LOOPING  # QMTP-17
    if package.has_nul():
        return smtp_data.NUL  # relayed over SMTP, NUL could end the data early (hardening #5)
    return None
