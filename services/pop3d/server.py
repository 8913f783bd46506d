"""POP3 listeners on asyncio streams: port 110 (plaintext plus STLS) and 995 (implicit TLS).

The adapter between sockets and :class:`services.pop3d.session.Session`: it reads lines with a
hard length bound and an idle timeout (POP3-24, POP3-25), hands each to the session, writes
the reply, and performs what the reply asks for (close, TLS). Port 0 works: :attr:`ports`
tells what was bound. On stop it stops accepting, lets a command in progress finish, and
closes every connection without an update (POP3-22).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Literal

from services.pop3d import metrics
from services.pop3d.protocol import MAX_SASL_LINE
from services.pop3d.session import Policy, Session

log = logging.getLogger(__name__)

Listener = Literal["pop3", "pop3s"]
IDLE_TIMEOUT = 1200.0  # POP3-25
WRITE_TIMEOUT = 60.0
HANDSHAKE_TIMEOUT = 60.0
STOP_GRACE = 10.0
READ_LIMIT = MAX_SASL_LINE + 2  # longer lines are cut and answered "-ERR line too long"

SessionFactory = Callable[[Policy], Session]
PolicyFactory = Callable[[bool, bool], Policy]  # (tls configured, implicit TLS) -> Policy


class Closed(Exception):
    """The client went away or was silent for too long."""


async def read_line(reader: asyncio.StreamReader, idle: float) -> tuple[bytes, bool]:
    """One line with its LF, and whether it had to be cut at :data:`READ_LIMIT`.

    Each read waits at most ``idle`` seconds for the client (POP3-25).
    """
    overlong = False
    head = b""
    while True:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), idle)
        except asyncio.LimitOverrunError as err:
            chunk = await asyncio.wait_for(reader.readexactly(err.consumed), idle)
            head = head or chunk[:READ_LIMIT]
            overlong = True
            continue
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError) as err:
            raise Closed(type(err).__name__) from err
        return (head, True) if overlong else (line, False)


def discard_buffered(reader: asyncio.StreamReader) -> None:
    """Drop plaintext the client pipelined after STLS (RFC 2595 section 4, POP3-41).

    Bytes read before the handshake must never be taken as commands of the TLS session.
    StreamReader has no public way to drop its buffer, so this clears it directly.
    """
    buffer = getattr(reader, "_buffer", None)
    if isinstance(buffer, bytearray):
        buffer.clear()


class Pop3Server:
    """Service component: both listeners and their connections."""

    def __init__(
        self,
        *,
        host: str,
        ports: dict[Listener, int],
        sessions: SessionFactory,
        policy: PolicyFactory,
        tls: Callable[[], ssl.SSLContext | None],
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._host = host
        self._want = ports
        self._sessions = sessions
        self._policy = policy
        self._tls = tls
        self._idle_timeout = idle_timeout
        self._servers: dict[Listener, asyncio.Server] = {}
        self._connections: dict[asyncio.Task[None], bool] = {}  # task -> busy with a command
        self._stopping = False

    @property
    def ports(self) -> dict[Listener, int]:
        """The bound port of each listener (after :meth:`start`)."""
        return {n: int(s.sockets[0].getsockname()[1]) for n, s in self._servers.items()}

    async def start(self) -> None:
        for name, port in self._want.items():
            self._servers[name] = await asyncio.start_server(
                self._client(name), self._host, port, limit=READ_LIMIT
            )
        log.info("pop3d.listening", extra={"ports": self.ports})

    async def check(self) -> None:
        for name in self._want:
            server = self._servers.get(name)
            if server is None or not server.is_serving():
                raise RuntimeError(f"{name} listener not serving")

    async def stop(self) -> None:
        self._stopping = True
        for server in self._servers.values():
            server.close()
        for task, busy in list(self._connections.items()):
            if not busy:
                task.cancel()
        if self._connections:
            _, pending = await asyncio.wait(list(self._connections), timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _client(
        self, listener: Listener
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]:
        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.create_task(self._connection(listener, reader, writer))
            self._connections[task] = False

            def finished(done: asyncio.Task[None]) -> None:
                self._connections.pop(done, None)
                writer.close()  # also when the task was cancelled before it ever ran

            task.add_done_callback(finished)

        return accept

    async def _connection(
        self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        metrics.SESSIONS.labels(listener).inc()
        started = time.monotonic()
        context = self._tls()
        session: Session | None = None
        try:
            if listener == "pop3s":
                if context is None:
                    log.warning("pop3d.tls_unavailable", extra={"listener": listener})
                    return
                await writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
            session = self._sessions(self._policy(context is not None, listener == "pop3s"))
            await self._write(writer, session.greeting())
            await self._dialogue(session, reader, writer, context)
        except (Closed, ConnectionError, ssl.SSLError, TimeoutError) as err:
            log.debug("pop3d.disconnected", extra={"reason": type(err).__name__})
        except asyncio.CancelledError:
            log.debug("pop3d.disconnected", extra={"reason": "stopping"})
        except Exception:
            log.exception("pop3d.session_failed")
        finally:
            if session is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(session.close())
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 5)
            metrics.SESSION_SECONDS.observe(time.monotonic() - started)

    async def _dialogue(
        self,
        session: Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ssl.SSLContext | None,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self._stopping:
            line, overlong = await read_line(reader, self._idle_timeout)
            self._connections[task] = True
            step = await session.handle(line, overlong=overlong)
            if step.start_tls and context is not None:
                # Drop what was pipelined after STLS *before* answering: once +OK is out, the
                # next bytes are the client's handshake. start_tls drains and stops reading
                # without yielding to the loop, so the ClientHello cannot land in the buffer.
                discard_buffered(reader)
                writer.write(step.reply)
                await writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
                session.tls_started()
            else:
                await self._write(writer, step.reply)
            self._connections[task] = False
            if step.close:
                return

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
