"""IMAP listeners: port 143 (plaintext plus STARTTLS) and 993 (implicit TLS) (#13).

The shared listener (:mod:`qmesh.runtime.listeners`: PROXY protocol from ``proxyclients``,
session cap, ``maxconnip``) accepts; pymap's connection loop speaks IMAP. What pymap leaves
open is bounded here, before its parser sees a byte: a line longer than
:data:`MAX_LINE`, a literal larger than :data:`MAX_LITERAL` (or :data:`~services.imapd.config.
MAX_APPEND` for APPEND) is answered ``BAD`` without being read into memory, a silent client is
logged out after :data:`IDLE_TIMEOUT`, and pipelined bytes after STARTTLS are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterable, Callable
from contextlib import AsyncExitStack
from typing import Any, Literal, cast

from pymap.context import connection_exit, current_command, socket_info, subsystem
from pymap.imap import IMAPConnection
from pymap.imap.state import ConnectionState
from pymap.interfaces.login import LoginInterface
from pymap.parsing import Params
from pymap.parsing.command import Command
from pymap.parsing.command.nonauth import StartTLSCommand
from pymap.parsing.commands import Commands, InvalidCommand
from pymap.parsing.response import (
    CommandResponse,
    Response,
    ResponseBad,
    ResponseBye,
    ResponseOk,
)
from pymap.parsing.state import ExpectContinuation, ParsingInterrupt
from pysasl.creds.server import ServerCredentials
from pysasl.exception import AuthenticationError
from pysasl.mechanism import ChallengeResponse, ServerChallenge

from qmesh.control.parse import Network
from qmesh.runtime.listeners import HANDSHAKE_TIMEOUT, Accepted, Listeners, discard_buffered
from services.imapd import extensions, metrics, mutf7, speedups, streaming
from services.imapd.config import MAX_APPEND, ImapConfig

log = logging.getLogger(__name__)
mutf7.install()
streaming.install()
speedups.install()

Listener = Literal["imap", "imaps"]
IDLE_TIMEOUT = 1860.0  # RFC 3501 5.4: at least 30 minutes
WRITE_TIMEOUT = 60.0
STOP_GRACE = 10.0
MAX_LINE = 65536  # Dovecot's imap_max_line_length
MAX_LITERAL = 65536  # any literal but an APPEND's message
SEND_CHUNK = 65536  # a response is handed to the socket in pieces of about this size
TOO_MANY = b"* BYE Too many connections from your address.\r\n"
_LITERAL_PLUS = re.compile(rb"\{([0-9]+)\+\}\r?\n$")
_LITERAL = re.compile(rb"\{([0-9]+)\+?\}\r?\n$")
_TAG = re.compile(rb"^([\x21-\x7e]{1,64}?)[ \r\n]")
_TAG_CHARS = re.compile(rb"^[^(){ %*\"\\\]+]+$")

ConfigFactory = Callable[[Listener, str], ImapConfig]
LoginFactory = Callable[[ImapConfig, str], LoginInterface]  # config, client address


class LineTooLong(Exception):
    def __init__(self, head: bytes) -> None:
        self.head = head


class LiteralTooBig(Exception):
    def __init__(self, head: bytes, *, sent: bool) -> None:
        self.head = head
        self.sent = sent  # LITERAL+: the client is sending it anyway


class Refused(InvalidCommand):
    """A command answered ``BAD`` before parsing."""

    def __init__(self, tag: bytes, message: bytes) -> None:
        super().__init__(Params(tag=tag), None)
        self._message = message

    @property
    def message(self) -> bytes:
        return self._message


def tag_of(head: bytes) -> bytes:
    m = _TAG.match(head)
    if m and _TAG_CHARS.match(m.group(1)):
        return m.group(1)
    return b"*"


def literal_limit(head: bytes) -> int:
    words = head.split(b" ", 3)
    command = b" ".join(words[1:3]).upper()
    return MAX_APPEND if command.startswith(b"APPEND") else MAX_LITERAL


class PeerInfo:
    """What pymap asks of a connection's socket (``proxyprotocol.sock.SocketInfo``)."""

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self.unique_id = uuid.uuid4().bytes
        self.dnsbl = None
        try:
            self.from_localhost = ipaddress.ip_address(remote.strip("[]")).is_loopback
        except ValueError:
            self.from_localhost = False

    def __str__(self) -> str:
        return f"<PeerInfo {self.remote}>"


class Coalesced:
    """pymap writes a response in many small pieces (a ``FETCH 1:*`` of 10,000 messages is
    70,000 of them); gathered here, the socket sees one send per :data:`SEND_CHUNK` (#13)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._buf = bytearray()
        # a message text read from the store as it is sent (services/imapd/streaming.py),
        # with what was written after it, until :meth:`pump`
        self._later: list[bytes | AsyncIterable[bytes]] = []

    def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= SEND_CHUNK and not self._later:
            self.flush()

    def defer(self, source: AsyncIterable[bytes]) -> None:
        self._later += [bytes(self._buf), source]
        self._buf.clear()

    def flush(self) -> None:
        if self._buf:
            self._writer.write(bytes(self._buf))
            self._buf.clear()

    async def pump(self) -> None:
        """Send what was deferred, each chunk as the socket takes it."""
        if not self._later:
            return
        later, self._later = self._later, []
        later.append(bytes(self._buf))
        self._buf.clear()
        for part in later:
            if isinstance(part, bytes):
                self._writer.write(part)
                continue
            async for chunk in part:
                self._writer.write(chunk)
                await self._writer.drain()


class Connection(IMAPConnection):
    """pymap's connection loop with bounded reads and an idle timeout."""

    def __init__(
        self,
        commands: Commands,
        config: ImapConfig,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: PeerInfo,
        idle_timeout: float,
    ) -> None:
        super().__init__(commands, config, reader, writer, cast(Any, peer))
        self.idle_timeout = idle_timeout

    async def _line(self) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.readuntil(b"\n"), self.idle_timeout)
        except asyncio.LimitOverrunError as err:
            head = await self.reader.readexactly(err.consumed)
            await self._skip_line()
            raise LineTooLong(head) from err
        except asyncio.IncompleteReadError as err:
            raise EOFError() from err
        except TimeoutError as err:
            with contextlib.suppress(Exception):
                await self.write_response(ResponseBye(b"Autologout; idle for too long."))
            raise EOFError() from err

    async def _skip_line(self) -> None:
        """Drop the rest of an overlong line without keeping it."""
        while True:
            try:
                await asyncio.wait_for(self.reader.readuntil(b"\n"), self.idle_timeout)
                return
            except asyncio.LimitOverrunError as err:
                await self.reader.readexactly(err.consumed)

    async def readline(self) -> memoryview:
        buf = bytearray(await self._line())
        while True:
            m = _LITERAL_PLUS.search(buf)
            if m is None:
                return memoryview(buf)
            size = int(m.group(1))
            if size > literal_limit(bytes(buf[:200])) or len(buf) > MAX_APPEND:
                raise LiteralTooBig(bytes(buf[:200]), sent=True)
            buf += await asyncio.wait_for(self.reader.readexactly(size), self.idle_timeout)
            buf += await self._line()

    async def _interrupt(
        self, state: ConnectionState, interrupt: ParsingInterrupt, continuations: list[memoryview]
    ) -> None:
        expected = interrupt.expected
        if isinstance(expected, ExpectContinuation):
            head = bytes(continuations[0][:200]) if continuations else b""
            if expected.literal_length > MAX_APPEND:
                raise LiteralTooBig(head, sent=False)
        await super()._interrupt(state, interrupt, continuations)

    async def read_command(self, state: ConnectionState) -> Command:
        line = b""
        try:
            return await super().read_command(state)
        except LineTooLong as err:
            metrics.REFUSED.labels("line").inc()
            return Refused(tag_of(err.head), b"Line too long.")
        except LiteralTooBig as err:
            metrics.REFUSED.labels("literal").inc()
            if err.sent:  # its bytes are on their way: answer, then hang up (RFC 7888 4)
                await self.write_response(
                    ResponseBad(tag_of(err.head), b"[TOOBIG] Literal too big.")
                )
                await self.write_response(ResponseBye(b"Literal too big; disconnecting."))
                raise EOFError() from err
            return Refused(tag_of(err.head or line), b"[TOOBIG] Literal too big.")

    async def authenticate(
        self, state: ConnectionState, mech_name: bytes
    ) -> ServerCredentials | None:
        """SASL-IR (RFC 4959): the initial response came with the command."""
        cmd = current_command.get(None)
        if not isinstance(cmd, extensions.InitialResponseAuthenticate) or cmd.initial is None:
            return await super().authenticate(state, mech_name)
        mech = state.auth.get_server(mech_name)
        if mech is None:
            return None
        try:
            creds, _ = mech.server_attempt([ChallengeResponse(b"", cmd.initial)])
        except ServerChallenge as err:  # a mechanism of more steps: not offered here
            raise AuthenticationError("Initial response incomplete.") from err
        return creds

    async def start_tls(self) -> None:
        """Done already, in :meth:`write_response`, without yielding to the loop."""

    async def write_response(self, resp: Response) -> None:
        cmd = current_command.get(None)
        if isinstance(cmd, StartTLSCommand) and isinstance(resp, ResponseOk):
            # After this OK the next bytes are the client's handshake: drop what was pipelined
            # before answering, and hand the socket to TLS before the loop can read again
            # (the ClientHello must not land in the plaintext buffer).
            discard_buffered(self.reader)
            self.writer.write(bytes(resp))
            await self.writer.start_tls(
                self.config.ssl_context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
            )
            return
        await asyncio.wait_for(self._send(resp), WRITE_TIMEOUT)

    async def _send(self, resp: Response) -> None:
        """pymap's ``write_response`` without its debug copy of the whole response (which
        formats every response twice) and with the pieces coalesced."""
        out = Coalesced(self.writer)
        try:
            if isinstance(resp, CommandResponse):
                # CommandResponse.async_write, with a FETCH that needs no content written
                # directly: no content to load around it (pymap's writing hook), no
                # per-item formatting (pymap 0.36.7 keeps the untagged list in _untagged)
                for untagged in resp._untagged:
                    line = speedups.fetch_line(untagged)
                    if line is None:
                        await untagged.async_write(out)
                        await out.pump()
                    else:
                        out.write(line)
                Response.write(resp, out)
            else:
                await resp.async_write(out)
                await out.pump()
            out.flush()
            await self.writer.drain()
        except ConnectionError:
            pass


class ImapServer(Listeners):
    """Service component: both listeners and their connections."""

    def __init__(
        self,
        *,
        host: str,
        ports: dict[Listener, int],
        configs: ConfigFactory,
        logins: LoginFactory,
        tls: Callable[[], ssl.SSLContext | None],
        proxyclients: Callable[[], tuple[Network, ...]] = tuple,
        max_sessions: int = 500,
        maxconnip: Callable[[], int] = lambda: 0,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._configs = configs
        self._logins = logins
        self._tls = tls
        self._idle_timeout = idle_timeout
        self._commands = extensions.commands()
        super().__init__(
            service="imapd",
            host=host,
            ports={str(name): port for name, port in ports.items()},
            handler=self._connection,
            proxyclients=proxyclients,
            grace=STOP_GRACE,
            on_proxy=lambda result: metrics.PROXIED.labels(result).inc(),
            max_sessions=max_sessions,
            maxconnip=maxconnip,
            too_many=lambda listener: TOO_MANY if listener == "imap" else b"",
        )

    async def _connection(self, accepted: Accepted) -> None:
        listener = cast(Listener, accepted.listener)
        metrics.SESSIONS.labels(listener).inc()
        started = time.monotonic()
        context = self._tls()
        writer: asyncio.StreamWriter | None = None
        try:
            if listener == "imaps" and context is None:
                log.warning("imapd.tls_unavailable", extra={"listener": listener})
                return
            reader, writer = await accepted.open(
                context if listener == "imaps" else None, limit=MAX_LINE
            )
            config = self._configs(listener, accepted.remote)
            subsystem.set(config.subsystem)
            peer = PeerInfo(accepted.remote)
            conn = Connection(self._commands, config, reader, writer, peer, self._idle_timeout)
            state = extensions.State(self._logins(config, accepted.remote), config)
            async with AsyncExitStack() as stack:
                connection_exit.set(stack)
                socket_info.set(cast(Any, peer))
                await conn.run(state)
        except (ConnectionError, ssl.SSLError, TimeoutError, EOFError) as err:
            log.debug("imapd.disconnected", extra={"reason": type(err).__name__})
        except asyncio.CancelledError:
            log.debug("imapd.disconnected", extra={"reason": "stopping"})
        except Exception:
            log.exception("imapd.session_failed")
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 5)
            metrics.SESSION_SECONDS.observe(time.monotonic() - started)
            log.info(
                "imapd.session",
                extra={
                    "listener": listener,
                    "remote": accepted.remote,
                    "duration_ms": round((time.monotonic() - started) * 1000),
                },
            )
