"""The world remote talks to, on loopback in the test's own loop: SMTP and QMTP servers (DNS:
:mod:`tests.dnsserver`).

- :class:`Sink`: an aiosmtpd server that records what it receives and answers on demand.
- :class:`Peer`: a scripted SMTP server for what aiosmtpd will not do (a bad greeting, EHLO
  refused, a dropped connection, a failed TLS handshake); it records every command line.
- :class:`QmtpPeer`: a QMTP server that records packages and answers K, Z or D.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    sender: str
    recipients: list[str]
    options: list[str]
    data: bytes
    tls: bool
    helo: str


@dataclass
class Sink:
    """aiosmtpd handler: records mail; ``rcpt``/``mail``/``data`` replace the 250 answers,
    ``rcpt_answers`` the answer to RCPT for one address."""

    mail: str | None = None
    rcpt: str | None = None
    rcpt_answers: dict[str, str] = field(default_factory=dict)
    data: str = "250 2.0.0 sunk"
    drop_after_data: bool = False
    messages: list[Received] = field(default_factory=list)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail:
            return self.mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt:
            return self.rcpt
        if address in self.rcpt_answers:
            return self.rcpt_answers[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(
            Received(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                list(envelope.mail_options),
                envelope.original_content or b"",
                session.ssl is not None,
                session.host_name or "",
            )
        )
        if self.drop_after_data:
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
        return self.data


async def start_sink(
    sink: Sink, host: str = "127.0.0.1", port: int = 0, **smtp: object
) -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, **smtp), host, port)  # type: ignore[arg-type]
    return server, server.sockets[0].getsockname()[1]


OPEN: set[asyncio.StreamWriter] = set()  # server ends of peer connections still open


def close_open_connections() -> None:
    """Close what a test's peers still hold (a stalled session outlives ``server.close()``)."""
    while OPEN:
        OPEN.pop().close()


@dataclass
class Peer:
    """A scripted SMTP server. ``answers`` by verb (and ``DOT`` for the end of the data);
    ``drop_at`` closes the connection instead of answering that verb."""

    greeting: bytes = b"220 peer.test ESMTP"
    ehlo: tuple[bytes, ...] = (b"250-peer.test", b"250-8BITMIME", b"250 SIZE 1000000")
    answers: dict[str, bytes] = field(default_factory=dict)
    drop_at: str | None = None
    tls_garbage: bool = False  # answer STARTTLS with 220, then send bytes that are not TLS
    sessions: list[list[bytes]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)

    def answer(self, verb: str) -> bytes:
        defaults = {
            "HELO": b"250 peer.test",
            "DATA": b"354 go ahead",
            "DOT": b"250 ok queued",
            "QUIT": b"221 bye",
            "RSET": b"250 ok",
            "STARTTLS": b"220 ready",
        }
        return self.answers.get(verb, defaults.get(verb, b"250 ok"))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        OPEN.add(writer)
        lines: list[bytes] = []
        self.sessions.append(lines)
        try:
            writer.write(self.greeting + b"\r\n")
            while line := await reader.readline():
                line = line.rstrip(b"\r\n")
                lines.append(line)
                verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper().decode()
                if verb == self.drop_at:
                    return
                if verb == "EHLO":
                    writer.write(b"".join(x + b"\r\n" for x in self.ehlo))
                    continue
                writer.write(self.answer(verb) + b"\r\n")
                if verb == "STARTTLS" and self.tls_garbage:
                    writer.write(b"this is not a TLS handshake\r\n" * 10)
                    await writer.drain()
                    return
                if verb == "DATA" and self.answer("DATA").startswith(b"354"):
                    data = await reader.readuntil(b"\r\n.\r\n")
                    self.messages.append(data)
                    if self.drop_at == "DOT":
                        return
                    writer.write(self.answer("DOT") + b"\r\n")
                if verb == "QUIT":
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            OPEN.discard(writer)
            writer.close()


async def start_peer(
    peer: Peer, host: str = "127.0.0.1", port: int = 0
) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(peer.handle, host, port)
    return server, server.sockets[0].getsockname()[1]


@dataclass
class QmtpPeer:
    """A QMTP server: records (message, sender, recipients); answers ``response`` per recipient."""

    response: bytes = b"Kok 1 qp 2"
    drop: bool = False
    packages: list[tuple[bytes, bytes, list[bytes]]] = field(default_factory=list)

    @staticmethod
    async def netstring(reader: asyncio.StreamReader) -> bytes:
        length = int((await reader.readuntil(b":"))[:-1])
        data = await reader.readexactly(length)
        assert await reader.readexactly(1) == b","
        return data

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        OPEN.add(writer)
        try:
            message = await self.netstring(reader)
            sender = await self.netstring(reader)
            rcpts_raw = await self.netstring(reader)
            inner = asyncio.StreamReader()
            inner.feed_data(rcpts_raw)
            inner.feed_eof()
            recipients = []
            while not inner.at_eof():
                recipients.append(await self.netstring(inner))
            self.packages.append((message, sender, recipients))
            if not self.drop:
                for _ in recipients:
                    writer.write(b"%d:%s," % (len(self.response), self.response))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            OPEN.discard(writer)
            writer.close()
