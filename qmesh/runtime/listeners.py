"""TCP listeners for the line protocols (SMTP, POP3): accept, PROXY header, TLS, streams.

One accept loop per port in the service's own event loop (port 0 works). Each connection gets
its own task; the service's handler receives an :class:`Accepted` whose ``remote`` is already
the client (the PROXY header of a trusted balancer, SMTPD-86) and opens the streams itself,
with or without implicit TLS. The PROXY header is read byte-exact from the socket before any
stream exists, so nothing the client sends after it (a TLS ClientHello) is lost.

On stop the listeners close, idle connections are cancelled, and connections busy with a
command get ``grace`` seconds to finish (a handler says which it is with :func:`busy`).

Two bounds keep one replica serving (SMTPD-73): at most ``max_sessions`` connections per
listener (more wait in the listen backlog), and at most ``maxconnip`` connections from one
client address across all the listeners (IPv6 counted per /64), counted after the PROXY
header so that behind a balancer the client is the proxied address. A client over its share
hears the service's ``too_many`` reply and is closed at once, so it never holds a slot that
another client is waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from qmesh.address import client_address
from qmesh.control.parse import Network
from qmesh.proxy import ProxyError, read_header, socket_recv, trusted

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 60.0
REFUSAL_TIMEOUT = 5.0
WRITE_TIMEOUT = 60.0  # a client that stops reading cannot hold a session


@dataclass(slots=True)
class Accepted:
    """One accepted connection, before any stream is opened on it."""

    listener: str
    sock: socket.socket
    remote: str  # the client's address (from the PROXY header when a balancer sent one)
    proxied: bool = False
    owned: bool = False  # streams were opened: the transport closes the socket

    async def open(
        self, tls: ssl.SSLContext | None = None, limit: int = 2**16
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Server-side streams on the socket (so a later STARTTLS/STLS knows its role)."""
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        opened = loop.create_future()
        reader = asyncio.StreamReader(limit=limit)
        protocol = asyncio.StreamReaderProtocol(
            reader, lambda r, w: None if opened.done() else opened.set_result((r, w))
        )
        self.owned = True
        await loop.connect_accepted_socket(
            lambda: protocol,
            self.sock,
            ssl=tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls else None,
        )
        return await opened


Handler = Callable[[Accepted], Awaitable[None]]


def discard_buffered(reader: asyncio.StreamReader) -> None:
    """Drop bytes already read from the socket but not yet consumed (after STARTTLS/STLS).

    Plaintext pipelined after the command must never be taken as commands of the TLS session
    (RFC 3207 section 4.2, RFC 2595 section 4). StreamReader has no public way to drop its
    buffer, so this clears it directly.
    """
    buffer = getattr(reader, "_buffer", None)
    if isinstance(buffer, bytearray):
        buffer.clear()


async def drained(writer: asyncio.StreamWriter) -> None:
    """Wait until what was written has left for the client, at most :data:`WRITE_TIMEOUT`.

    A reply that the socket took whole leaves nothing to wait for, so the common case costs no
    timer; a closed connection shows at the next read.
    """
    if writer.transport.get_write_buffer_size() == 0 and not writer.transport.is_closing():
        return
    async with asyncio.timeout(WRITE_TIMEOUT):
        await writer.drain()


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening, non-blocking TCP socket (port 0 picks a free port)."""
    if host in ("", "::"):
        sock = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=128)
    sock.setblocking(False)
    return sock


def _peer_host(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return "unknown"


def client_key(remote: str) -> str:
    """What the per-client cap counts: the address, an IPv6 one by its /64."""
    addr = client_address(remote)
    if addr is None:
        return remote
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


_BUSY: dict[asyncio.Task[None], bool] = {}


def busy(flag: bool) -> None:
    """Mark the current connection as in the middle of a command (or idle again)."""
    task = asyncio.current_task()
    if task in _BUSY:
        _BUSY[task] = flag


class Listeners:
    """Service component: accept loops on ``ports`` handing connections to ``handler``.

    A protocol server subclasses it and passes its own connection handler.
    """

    def __init__(
        self,
        *,
        service: str,
        host: str,
        ports: dict[str, int],
        handler: Handler,
        proxyclients: Callable[[], tuple[Network, ...]] = tuple,
        grace: float = 10.0,
        on_proxy: Callable[[str], None] = lambda result: None,
        max_sessions: int = 500,
        maxconnip: Callable[[], int] = lambda: 0,
        too_many: Callable[[str], bytes] = lambda listener: b"",
    ) -> None:
        self._service = service
        self._host = host
        self._want = ports
        self._handler = handler
        self._proxyclients = proxyclients
        self._grace = grace
        self._on_proxy = on_proxy
        self._sockets: dict[str, socket.socket] = {}
        self._acceptors: dict[str, asyncio.Task[None]] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self._max_sessions = max_sessions
        self._maxconnip = maxconnip
        self._too_many = too_many
        self._per_client: Counter[str] = Counter()
        self.stopping = False

    @property
    def ports(self) -> dict[str, int]:
        """The bound port of each listener (after :meth:`start`)."""
        return {n: int(sock.getsockname()[1]) for n, sock in self._sockets.items()}

    async def start(self) -> None:
        for name, port in self._want.items():
            sock = listening_socket(self._host, port)
            self._sockets[name] = sock
            self._acceptors[name] = asyncio.create_task(self._accept(name, sock))
        log.info(f"{self._service}.listening", extra={"ports": self.ports})

    async def check(self) -> None:
        for name in self._want:
            task = self._acceptors.get(name)
            if task is None or task.done():
                raise RuntimeError(f"{name} listener not serving")

    async def stop(self) -> None:
        self.stopping = True
        for task in self._acceptors.values():
            task.cancel()
        await asyncio.gather(*self._acceptors.values(), return_exceptions=True)
        for sock in self._sockets.values():
            sock.close()
        for task in list(self._connections):
            if not _BUSY.get(task, False):
                task.cancel()
        if self._connections:
            _, pending = await asyncio.wait(list(self._connections), timeout=self._grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _accept(self, listener: str, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        room = asyncio.Semaphore(self._max_sessions)  # per listener (SMTPD-73)
        while True:
            await room.acquire()  # at the limit, new clients wait in the listen backlog
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as err:  # EMFILE and the like: keep the listener, slow down
                room.release()
                log.warning(f"{self._service}.accept_failed", extra={"reason": str(err)})
                await asyncio.sleep(0.5)
                continue
            conn.setblocking(False)
            accepted = Accepted(listener, conn, _peer_host(conn))
            task = asyncio.create_task(self._admit(accepted))
            self._connections.add(task)
            _BUSY[task] = False

            def finished(done: asyncio.Task[None], accepted: Accepted = accepted) -> None:
                room.release()
                self._connections.discard(done)
                _BUSY.pop(done, None)
                if not accepted.owned:
                    accepted.sock.close()  # no transport took it (or the task never ran)

            task.add_done_callback(finished)

    async def _admit(self, accepted: Accepted) -> None:
        """The PROXY header of a trusted balancer, then the service's handler."""
        if trusted(accepted.remote, self._proxyclients()):
            try:
                proxied = await read_header(socket_recv(accepted.sock))
            except ProxyError as err:
                self._on_proxy("refused")
                log.warning(
                    f"{self._service}.proxy_refused",
                    extra={"remote": accepted.remote, "reason": str(err)},
                )
                return
            self._on_proxy("accepted")
            if proxied is not None:
                accepted.remote, accepted.proxied = proxied.host, True
        client = client_key(accepted.remote)
        limit = self._maxconnip()
        if limit > 0 and self._per_client[client] >= limit:
            await self._refuse(accepted)
            return
        self._per_client[client] += 1
        try:
            await self._handler(accepted)
        finally:
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

    async def _refuse(self, accepted: Accepted) -> None:
        """Over ``maxconnip``: the service's reply (if it has one here), then close."""
        log.info(
            f"{self._service}.too_many_connections",
            extra={"remote": accepted.remote, "listener": accepted.listener},
        )
        reply = self._too_many(accepted.listener)
        if reply:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(loop.sock_sendall(accepted.sock, reply), REFUSAL_TIMEOUT)
                accepted.sock.shutdown(socket.SHUT_WR)
