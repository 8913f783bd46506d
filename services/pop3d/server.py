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
import socket
import ssl
import time
from collections.abc import Callable
from typing import Literal

from qmesh.control.parse import Network
from qmesh.proxy import ProxyError, read_header, socket_recv, trusted
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


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening, non-blocking TCP socket (port 0 picks a free port)."""
    if host in ("", "::"):
        sock = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=128)
    sock.setblocking(False)
    return sock


def peer_host(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return "unknown"


async def open_stream(
    sock: socket.socket, tls: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams on an accepted socket, server side (so a later STLS knows its role)."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = loop.create_future()
    reader = asyncio.StreamReader(limit=READ_LIMIT)
    protocol = asyncio.StreamReaderProtocol(
        reader, lambda r, w: opened.set_result((r, w)) if not opened.done() else None
    )
    await loop.connect_accepted_socket(
        lambda: protocol, sock, ssl=tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls else None
    )
    return await opened


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
        proxyclients: Callable[[], tuple[Network, ...]] = tuple,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._host = host
        self._want = ports
        self._sessions = sessions
        self._policy = policy
        self._tls = tls
        self._idle_timeout = idle_timeout
        self._proxyclients = proxyclients
        self._sockets: dict[Listener, socket.socket] = {}
        self._acceptors: dict[Listener, asyncio.Task[None]] = {}
        self._connections: dict[asyncio.Task[None], bool] = {}  # task -> busy with a command
        self._stopping = False

    @property
    def ports(self) -> dict[Listener, int]:
        """The bound port of each listener (after :meth:`start`)."""
        return {n: int(sock.getsockname()[1]) for n, sock in self._sockets.items()}

    async def start(self) -> None:
        for name, port in self._want.items():
            sock = listening_socket(self._host, port)
            self._sockets[name] = sock
            self._acceptors[name] = asyncio.create_task(self._accept(name, sock))
        log.info("pop3d.listening", extra={"ports": self.ports})

    async def check(self) -> None:
        for name in self._want:
            task = self._acceptors.get(name)
            if task is None or task.done():
                raise RuntimeError(f"{name} listener not serving")

    async def stop(self) -> None:
        self._stopping = True
        for task in self._acceptors.values():
            task.cancel()
        await asyncio.gather(*self._acceptors.values(), return_exceptions=True)
        for sock in self._sockets.values():
            sock.close()
        for task, busy in list(self._connections.items()):
            if not busy:
                task.cancel()
        if self._connections:
            _, pending = await asyncio.wait(list(self._connections), timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _accept(self, listener: Listener, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as err:  # EMFILE and the like: keep the listener, slow down
                log.warning("pop3d.accept_failed", extra={"reason": str(err)})
                await asyncio.sleep(0.5)
                continue
            conn.setblocking(False)
            task = asyncio.create_task(self._connection(listener, conn))
            self._connections[task] = False

            def finished(done: asyncio.Task[None], conn: socket.socket = conn) -> None:
                self._connections.pop(done, None)
                if done.cancelled():
                    conn.close()  # cancelled before it ever ran: nothing else owns the socket

            task.add_done_callback(finished)

    async def _connection(self, listener: Listener, sock: socket.socket) -> None:
        metrics.SESSIONS.labels(listener).inc()
        started = time.monotonic()
        context = self._tls()
        session: Session | None = None
        writer: asyncio.StreamWriter | None = None
        conn: socket.socket | None = sock  # ours until a transport owns it
        remote = peer_host(sock)
        try:
            if trusted(remote, self._proxyclients()):
                # before TLS on 995: the balancer's header is outside the client's TLS stream
                proxied = await read_header(socket_recv(sock))
                metrics.PROXIED.labels("accepted").inc()
                remote = proxied.host if proxied else remote
            if listener == "pop3s" and context is None:
                log.warning("pop3d.tls_unavailable", extra={"listener": listener})
                return
            tls = context if listener == "pop3s" else None
            conn = None
            reader, writer = await open_stream(sock, tls)
            session = self._sessions(self._policy(context is not None, listener == "pop3s"))
            await self._write(writer, session.greeting())
            await self._dialogue(session, reader, writer, context)
        except ProxyError as err:
            metrics.PROXIED.labels("refused").inc()
            log.warning("pop3d.proxy_refused", extra={"remote": remote, "reason": str(err)})
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
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 5)
            elif conn is not None:
                conn.close()
            metrics.SESSION_SECONDS.observe(time.monotonic() - started)
            log.info(
                "pop3d.session",
                extra={
                    "listener": listener,
                    "remote": remote,
                    "duration_ms": round((time.monotonic() - started) * 1000),
                },
            )

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
