"""A small SMTP client on asyncio streams: replies, extensions, and qmail-remote's dialogue.

Every read and every write has its own timeout (``timeoutremote``, REMOTE-33); a timeout, an
EOF or an oversized reply is :class:`ConnectionDied`. :func:`transaction` speaks one mail
transaction (REMOTE-30, REMOTE-41..46) for one or more recipients of one domain (REMOTE-40)
and returns an :class:`Attempt`: the outcome, the report text, each recipient's own result once
RCPT was reached (REMOTE-32), and whether the next address is worth trying (REMOTE-20) or the
delivery should be made again in plaintext (REMOTE-42). Reply parsing (REMOTE-31) is pure
and unit-tested.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

from qmesh.contract.envelope import quote_address
from qmesh.contract.outcome import Outcome
from services.remote import report, tlsrpt
from services.remote.encode import DataEncoder

MAX_LINE = 65536
MAX_REPLY_LINES = 1000
UNPARSEABLE = 400  # a reply without a numeric code counts as a temporary failure


class ConnectionDied(Exception):
    """The connection closed, timed out or broke the protocol's framing."""


class BodyUnreadable(Exception):
    """The queued body could not be read while sending it."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[bytes, ...]  # without CR LF


def reply_code(line: bytes) -> int:
    """REMOTE-31: the code of a reply is the first three characters of its first line."""
    head = line[:3]
    if len(head) == 3 and head.isdigit():
        return int(head)
    return UNPARSEABLE


def continues(line: bytes) -> bool:
    """REMOTE-31: a line whose fourth character is ``-`` is followed by another."""
    return line[3:4] == b"-"


def parse_reply(lines: list[bytes]) -> Reply:
    """A complete reply from its lines (CR LF removed)."""
    return Reply(reply_code(lines[0]), tuple(lines))


def extensions(ehlo: Reply) -> dict[str, str]:
    """EHLO keywords (upper-case) and their parameters; the first line is the greeting."""
    found: dict[str, str] = {}
    for line in ehlo.lines[1:]:
        keyword, _, params = line[4:].decode("ascii", "replace").strip().partition(" ")
        if keyword:
            found[keyword.upper()] = params.strip()
    return found


def size_limit(params: str) -> int:
    """The number of ``SIZE <n>``; 0 (no limit) when absent or not a number (REMOTE-44)."""
    word = params.split(" ", 1)[0]
    return int(word) if word.isdigit() else 0


class Stream:
    """One TCP connection with a timeout on each read and write."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float):
        self._reader = reader
        self._writer = writer
        self._timeout = timeout

    @classmethod
    async def open(
        cls, address: str, port: int, *, connect_timeout: float, io_timeout: float
    ) -> Stream:
        """Connect; :class:`TimeoutError` on a timeout, :class:`OSError` on a refusal."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, limit=MAX_LINE), connect_timeout
        )
        return cls(reader, writer, io_timeout)

    async def line(self) -> bytes:
        try:
            raw = await asyncio.wait_for(self._reader.readuntil(b"\n"), self._timeout)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as e:
            raise ConnectionDied(type(e).__name__) from e
        return raw.rstrip(b"\n").removesuffix(b"\r")

    async def reply(self) -> Reply:
        lines = [await self.line()]
        while continues(lines[-1]):
            if len(lines) >= MAX_REPLY_LINES:
                raise ConnectionDied("reply too long")
            lines.append(await self.line())
        return parse_reply(lines)

    async def exactly(self, count: int) -> bytes:
        try:
            return await asyncio.wait_for(self._reader.readexactly(count), self._timeout)
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as err:
            raise ConnectionDied(type(err).__name__) from err

    async def send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self._timeout)
        except (TimeoutError, OSError) as err:
            raise ConnectionDied(type(err).__name__) from err

    async def command(self, line: bytes) -> Reply:
        await self.send(line + b"\r\n")
        return await self.reply()

    async def start_tls(self, context: ssl.SSLContext, server_name: str | None) -> None:
        await asyncio.wait_for(
            self._writer.start_tls(context, server_hostname=server_name), self._timeout
        )

    def peer_certificate(self) -> bytes:
        """The server's certificate (DER) after :meth:`start_tls`; empty if there is none."""
        sslobj = self._writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        return der or b""

    def peer_chain(self) -> list[bytes]:
        """The certificates the server presented (DER), its own first; see :func:`chain_of`."""
        sslobj = self._writer.get_extra_info("ssl_object")
        chain = chain_of(sslobj) if sslobj is not None else []
        return chain or ([self.peer_certificate()] if self.peer_certificate() else [])

    async def close(self, quit_first: bool = False) -> None:
        """Close; with ``quit_first`` send QUIT without waiting for its answer (REMOTE-30)."""
        with contextlib.suppress(Exception):
            if quit_first:
                self._writer.write(b"QUIT\r\n")
                await asyncio.wait_for(self._writer.drain(), 1.0)
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)


def chain_of(sslobj: ssl.SSLObject) -> list[bytes]:
    """The chain as sent by the server, DER, for DANE-TA (RFC 7672 section 3.1.2).

    Python 3.13 names it ``SSLObject.get_unverified_chain``; 3.10 to 3.12 have it on the
    ``_ssl`` object underneath. Without either, the list is empty and only the server's own
    certificate is known.
    """
    method = getattr(sslobj, "get_unverified_chain", None)
    if method is None:
        method = getattr(getattr(sslobj, "_sslobj", None), "get_unverified_chain", None)
    if method is None:
        return []
    try:
        found = method() or []
    except (ssl.SSLError, ValueError):
        return []
    der = [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in found]
    return [bytes(c) for c in der]


@dataclass(frozen=True, slots=True)
class TlsDemand:
    """A policy's demand on one connection (RFC 8461, RFC 7672): STARTTLS must be offered
    and succeed, and ``check`` (if any) must accept the server's certificate."""

    policy: str  # for reports: "the MTA-STS policy of example.com", "DANE (TLSA)"
    check: Callable[[Sequence[bytes]], str | None] | None = None  # chain (DER) -> None or why


@dataclass(frozen=True, slots=True)
class Letter:
    """What one transaction sends: the envelope and the stored form in chunks."""

    sender: str  # already "" for the double-bounce sender (ADDR-03)
    recipients: tuple[str, ...]  # one, or up to 100 of one domain (REMOTE-40)
    smtputf8: bool  # the envelope or the message needs SMTPUTF8 (REMOTE-46)
    eightbit: bool  # the body holds a byte >= 128 (REMOTE-45)
    wire_size: int  # the DATA content's size, for SIZE (REMOTE-44)
    chunks: Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Attempt:
    """The message's outcome and text; ``refused`` holds, per recipient, the outcome and text of
    a refusal at RCPT (None: accepted or not reached)."""

    outcome: Outcome
    report: str
    next_address: bool = False  # REMOTE-20 [MODERN]: nothing was accepted, try the next one
    tls_failed: bool = False  # REMOTE-42: try this address again in plaintext
    tls: bool = False  # the message went over TLS
    tls_result: str | None = None  # RFC 8460's result type of a failed TLS negotiation
    refused: tuple[tuple[Outcome, str] | None, ...] = ()

    def results(self, count: int) -> list[tuple[Outcome, str]]:
        """REMOTE-32: each recipient's outcome and report; a refusal at RCPT takes precedence
        over the message's outcome, and its text comes before the message's."""
        found: list[tuple[Outcome, str]] = []
        for index in range(count):
            refusal = self.refused[index] if index < len(self.refused) else None
            if refusal is None:
                found.append((self.outcome, self.report))
            else:
                found.append((refusal[0], report.combined(refusal[1], self.report)))
        return found


async def transaction(
    stream: Stream,
    ip: str,
    *,
    helohost: str,
    letter: Letter,
    tls: ssl.SSLContext | None,
    server_name: str | None,
    demand: TlsDemand | None = None,
) -> Attempt:
    """One SMTP transaction on a fresh connection; the stream is closed afterwards."""
    dialogue = _Dialogue(stream, ip, helohost, demand)
    try:
        return await dialogue.run(letter, tls, server_name)
    except ConnectionDied:
        died = report.connection_died(ip, possible_duplicate=dialogue.critical)
        return Attempt(
            "deferred",
            died,
            next_address=not dialogue.mail_accepted,
            refused=tuple(dialogue.refused),
        )
    except BodyUnreadable:
        return Attempt("deferred", report.MESSAGE_UNREADABLE, refused=tuple(dialogue.refused))
    finally:
        await stream.close(quit_first=dialogue.quit_on_close)


class _Dialogue:
    def __init__(
        self, stream: Stream, ip: str, helohost: str, demand: TlsDemand | None = None
    ) -> None:
        self.stream = stream
        self.demand = demand
        self.tls = False
        self.ip = ip
        self.helohost = helohost.encode("utf-8", "surrogateescape")
        self.mail_accepted = False
        self.critical = False  # the final "." was sent: a loss now may be a duplicate
        self.quit_on_close = False
        self.refused: list[tuple[Outcome, str] | None] = []  # per recipient, once RCPT was sent

    async def hello(self) -> dict[str, str] | Attempt:
        """EHLO, and HELO after a 5xx (REMOTE-41); the extensions, or a failed attempt."""
        reply = await self.stream.command(b"EHLO " + self.helohost)
        if 200 <= reply.code < 300:
            return extensions(reply)
        if reply.code >= 500:
            reply = await self.stream.command(b"HELO " + self.helohost)
            if 200 <= reply.code < 300:
                return {}
        return Attempt("deferred", report.name_rejected(self.ip, reply.lines))

    async def run(
        self, letter: Letter, tls: ssl.SSLContext | None, server_name: str | None
    ) -> Attempt:
        ip = self.ip
        greeting = await self.stream.reply()
        self.quit_on_close = True
        if greeting.code != 220:
            return Attempt(
                "deferred", report.greeting_failed(ip, greeting.lines), next_address=True
            )
        exts = await self.hello()
        if isinstance(exts, Attempt):
            return exts
        demand = self.demand
        if tls is not None and "STARTTLS" in exts:
            reply = await self.stream.command(b"STARTTLS")
            if reply.code == 220:
                self.quit_on_close = False
                try:
                    await self.stream.start_tls(tls, server_name)
                except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as err:
                    why = str(err) or type(err).__name__
                    failure = tlsrpt.handshake_failure(err)
                    if demand is not None:  # never in plaintext: the next MX, or later
                        text = report.tls_required(ip, demand.policy, f"TLS failed: {why}")
                        return Attempt("deferred", text, next_address=True, tls_result=failure)
                    text = report.tls_failed(ip, why)
                    return Attempt(
                        "deferred", text, next_address=True, tls_failed=True, tls_result=failure
                    )
                if demand is not None and demand.check is not None:
                    problem = demand.check(self.stream.peer_chain())
                    if problem is not None:
                        text = report.tls_required(ip, demand.policy, problem)
                        return Attempt(
                            "deferred",
                            text,
                            next_address=True,
                            tls_result=tlsrpt.VALIDATION_FAILURE,
                        )
                self.tls = True
                self.quit_on_close = True
                exts = await self.hello()
                if isinstance(exts, Attempt):
                    return exts
            elif demand is not None:
                text = report.tls_required(ip, demand.policy, f"STARTTLS refused ({reply.code})")
                return Attempt(
                    "deferred", text, next_address=True, tls_result=tlsrpt.STARTTLS_NOT_SUPPORTED
                )
        elif demand is not None:
            text = report.tls_required(ip, demand.policy, "STARTTLS is not offered")
            return Attempt(
                "deferred", text, next_address=True, tls_result=tlsrpt.STARTTLS_NOT_SUPPORTED
            )
        attempt = await self.mail(letter, exts)
        return replace(attempt, tls=self.tls)

    async def mail(self, letter: Letter, exts: dict[str, str]) -> Attempt:
        ip = self.ip
        utf8 = "SMTPUTF8" in exts
        if letter.smtputf8 and not utf8:
            return Attempt("failed", report.NO_SMTPUTF8)
        params = b""
        if "SIZE" in exts:
            limit = size_limit(exts["SIZE"])
            if limit and letter.wire_size > limit:
                return Attempt("failed", report.TOO_BIG)
            params += b" SIZE=%d" % letter.wire_size
        if letter.eightbit and "8BITMIME" in exts:
            params += b" BODY=8BITMIME"
        if letter.smtputf8:
            params += b" SMTPUTF8"
        utf8_session = letter.smtputf8 and utf8
        sender = _path(letter.sender, utf8_session)
        reply = await self.stream.command(b"MAIL FROM:<" + sender + b">" + params)
        if reply.code >= 400:
            outcome: Outcome = "failed" if reply.code >= 500 else "deferred"
            return Attempt(outcome, report.sender_rejected(ip, reply.lines))
        self.mail_accepted = True
        for recipient in letter.recipients:  # REMOTE-30 step 4, REMOTE-40
            reply = await self.stream.command(b"RCPT TO:<" + _path(recipient, utf8_session) + b">")
            if reply.code >= 400:
                outcome = "failed" if reply.code >= 500 else "deferred"
                self.refused.append((outcome, report.recipient_rejected(ip, reply.lines)))
            else:
                self.refused.append(None)
        refused = tuple(self.refused)
        if all(r is not None for r in refused):
            return Attempt("failed", report.giving_up(ip), refused=refused)
        reply = await self.stream.command(b"DATA")
        if reply.code >= 400:
            outcome = "failed" if reply.code >= 500 else "deferred"
            return Attempt(outcome, report.data_failed(ip, reply.lines), refused=refused)
        await self.body(letter)
        self.critical = True
        reply = await self.stream.reply()
        self.critical = False
        if reply.code >= 400:
            outcome = "failed" if reply.code >= 500 else "deferred"
            return Attempt(outcome, report.message_failed(ip, reply.lines), refused=refused)
        return Attempt("delivered", report.accepted(ip, reply.lines), refused=refused)

    async def body(self, letter: Letter) -> None:
        """REMOTE-35/36: the stored form, encoded, then ``.`` CR LF."""
        encoder = DataEncoder()
        try:
            async for chunk in letter.chunks():
                data = encoder.feed(chunk)
                if data:
                    await self.stream.send(data)
        except ConnectionDied:
            raise
        except Exception as err:
            self.quit_on_close = False  # never let a half message be taken for a whole one
            raise BodyUnreadable(str(err)) from err
        await self.stream.send(encoder.finish())


def _path(address: str, smtputf8: bool) -> bytes:
    """ADDR-07 quoting; ADDR-03/REMOTE-47: the double-bounce sender is already ``""``."""
    return quote_address(address, smtputf8=smtputf8).encode("utf-8", "surrogateescape")
