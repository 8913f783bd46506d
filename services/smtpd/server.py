"""SMTP listeners on asyncio streams: the adapter between sockets and :class:`Session`.

It reads command lines with a hard length bound (SMTPD-72) and the ``timeoutsmtpd`` idle bound
(SMTPD-70), answers each in order and flushes when it needs more input (SMTPD-12), feeds DATA to
the session's :class:`~services.smtpd.data.DataReader` chunk by chunk, keeping whatever follows
the end of data as the next commands, and performs STARTTLS (SMTPD-80) and implicit TLS
(SMTPD-87). On stop, readiness is already false: new commands get ``421`` and a transaction in
DATA is finished first (ARCHITECTURE 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections.abc import Callable

from qmesh.control.parse import Network
from qmesh.limits.anvil import Admission, Anvil
from qmesh.runtime.listeners import (
    HANDSHAKE_TIMEOUT,
    Accepted,
    Listeners,
    busy,
    discard_buffered,
    drained,
)
from services.smtpd import metrics, replies
from services.smtpd import qmtp as qmtp_protocol
from services.smtpd.protocol import MAX_LINE
from services.smtpd.qmtp import Framing
from services.smtpd.session import Client, Session, Step

log = logging.getLogger(__name__)

MAX_AUTH_LINE = 12288  # SMTPD-72
CHUNK = 65536
STOP_GRACE = 25.0

SessionFactory = Callable[[Client], Session]


class Closed(Exception):
    """The client went away, or sent a bare line end in DATA."""


class TimedOut(Exception):
    """The client was silent for longer than ``timeoutsmtpd``."""


HELD = frozenset({b"MAIL", b"RCPT", b"RSET"})  # replies that may wait for the next (SMTPD-12)


class Connection:
    """Buffered reading on one client stream: lines with a bound, and raw chunks for DATA.

    Replies are written in order. A reply to MAIL, RCPT or RSET waits while the next command
    is already in hand, and goes out with the next reply the client must wait for: a
    pipelining client (RFC 2920) gets a group's replies in one write (SMTPD-12).

    One timer per connection bounds its reads: each read sets when it must end, and the timer,
    when it fires, either finds the read in progress overdue (the read then fails with
    :class:`TimedOut`) or moves on to the current read's end. A read costs no timer of its own.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, lifetime: float
    ) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = bytearray()
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + lifetime  # the whole session (SMTPD-70, QMTP-01)
        self._held = b""  # replies not yet written
        self._due = math.inf  # when the read in progress times out; inf: none in progress
        self._timer: asyncio.TimerHandle | None = None

    def now(self) -> float:
        return self._loop.time()

    async def fill(self, idle: float, until: float = math.inf) -> None:
        """One read, waiting at most ``idle``, and never past ``until`` or the session's end.

        Held replies are written first: the server needs more input (SMTPD-12).
        """
        if self._held:
            await self.write(b"")
        now = self._loop.time()
        due = min(now + idle, until, self.deadline)
        if due <= now:
            raise TimedOut
        self._due = due
        if self._timer is None or self._timer.when() > due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(due, self._expire)
        try:
            chunk = await self.reader.read(CHUNK)
        finally:
            self._due = math.inf
        if not chunk:
            raise Closed("eof")
        self.buffer += chunk

    def _expire(self) -> None:
        self._timer = None
        if self._due == math.inf:
            return  # no read in progress: the next one arms the timer again
        if self._loop.time() < self._due:
            self._timer = self._loop.call_at(self._due, self._expire)
            return
        self.reader.set_exception(TimedOut())  # the waiting read raises it

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.writer.close()

    async def line(self, limit: int, idle: float) -> tuple[bytes, bool]:
        """One line with its LF, and whether it was longer than ``limit`` (then cut).

        The whole line must arrive within ``idle`` seconds, not each of its bytes: a client
        trickling a byte at a time cannot hold the session (SMTPD-70).
        """
        until = self._loop.time() + idle
        overlong = False
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                body = line[:-2] if line.endswith(b"\r\n") else line[:-1]
                return line, overlong or len(body) > limit
            if len(self.buffer) > limit + 2:  # discard up to the next LF (SMTPD-72)
                overlong = True
                self.buffer.clear()
            await self.fill(idle, until)

    async def exactly(self, n: int, idle: float) -> bytes:
        while len(self.buffer) < n:
            await self.fill(idle)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def skip(self, n: int, idle: float) -> None:
        while n > 0:
            if not self.buffer:
                await self.fill(idle)
            taken = min(n, len(self.buffer))
            del self.buffer[:taken]
            n -= taken

    def discard(self) -> None:
        """Drop everything pipelined after STARTTLS (SMTPD-80)."""
        self.buffer.clear()
        discard_buffered(self.reader)

    def reply(self, verb: bytes, data: bytes) -> bool:
        """Hold the reply to ``verb`` if it may wait (SMTPD-12); False: write it now."""
        if verb in HELD and b"\n" in self.buffer:
            self._held += data
            return True
        return False

    def take_held(self) -> bytes:
        held, self._held = self._held, b""
        return held

    async def write(self, data: bytes) -> None:
        if self._held:
            data = self.take_held() + data
        if data:
            self.writer.write(data)
            await drained(self.writer)


class SmtpServer(Listeners):
    """Service component: the SMTP listeners (25, 587 and 465 in their container ports)."""

    def __init__(
        self,
        *,
        host: str,
        ports: dict[str, int],
        sessions: SessionFactory,
        tls: Callable[[], ssl.SSLContext | None],
        submission: frozenset[str],
        implicit_tls: frozenset[str],
        qmtp: frozenset[str] = frozenset(),
        qmtp_session_limit: float = qmtp_protocol.SESSION_LIMIT,
        timeout: Callable[[], float],
        greeting: Callable[[], str],
        proxyclients: Callable[[], tuple[Network, ...]] = tuple,
        max_sessions: int = 500,
        maxconnip: Callable[[], int] = lambda: 0,
        anvil: Anvil | None = None,
    ) -> None:
        self._sessions = sessions
        self._anvil = anvil
        self._tls = tls
        self._submission = submission
        self._implicit = implicit_tls
        self._qmtp = qmtp
        self.qmtp_session_limit = qmtp_session_limit
        self._timeout = timeout
        self._greeting = greeting
        super().__init__(
            service="smtpd",
            host=host,
            ports=ports,
            handler=self._connection,
            proxyclients=proxyclients,
            grace=STOP_GRACE,
            on_proxy=lambda result: metrics.PROXIED.labels(result).inc(),
            max_sessions=max_sessions,
            maxconnip=maxconnip,
            too_many=self._too_many,
        )

    def _too_many(self, listener: str) -> bytes:
        """SMTPD-73: a plaintext SMTP listener says why; TLS and QMTP ones just close."""
        if listener in self._implicit or listener in self._qmtp:
            return b""
        return replies.TOO_MANY_CONNECTIONS.smtp().encode() + b"\r\n"

    async def _connection(self, accepted: Accepted) -> None:
        listener = accepted.listener
        metrics.SESSIONS.labels(listener).inc()
        context = self._tls()
        implicit = listener in self._implicit
        conn: Connection | None = None
        admission: Admission | None = None
        started = time.monotonic()
        try:
            if implicit and context is None:
                log.warning("smtpd.tls_unavailable", extra={"listener": listener})
                return
            client = Client(
                ip=accepted.remote,
                listener=listener,
                submission=listener in self._submission,
                tls_available=context is not None,
                tls_active=implicit,
            )
            reader, writer = await accepted.open(context if implicit else None)
            session = self._sessions(client)
            lifetime = session.config.session_timeout
            if listener in self._qmtp:
                lifetime = min(lifetime, self.qmtp_session_limit)  # QMTP-01
            conn = Connection(reader, writer, lifetime=lifetime)
            if implicit:
                metrics.TLS.labels(listener).inc()
            if self._anvil is not None and session.relayclient is None:
                admission = await self._anvil.admit(accepted.remote, lifetime)
                if not admission.allowed:
                    await self._limited(conn, listener, accepted.remote, admission)
                    return
            if listener in self._qmtp:
                await self._packages(session, conn)
                return
            await conn.write(session.greeting().encode() + b"\r\n")
            await self._dialogue(session, conn, context)
        except (Closed, Framing, ConnectionError, ssl.SSLError) as err:
            log.debug("smtpd.disconnected", extra={"reason": type(err).__name__})
        except TimedOut:
            log.debug("smtpd.disconnected", extra={"reason": "timeout"})
            if conn is not None and listener not in self._qmtp:
                with contextlib.suppress(Exception):
                    await conn.write(replies.TIMEOUT.smtp().encode() + b"\r\n")  # SMTPD-70
        except TimeoutError:
            log.debug("smtpd.disconnected", extra={"reason": "write timeout"})
        except asyncio.CancelledError:  # stopping while the client was idle
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.write(self._shutdown_reply()), 2)
            log.debug("smtpd.disconnected", extra={"reason": "stopping"})
        except Exception:
            log.exception("smtpd.session_failed")
        finally:
            if admission is not None and self._anvil is not None:
                self._anvil.release(admission)
            if conn is not None:
                conn.close()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await conn.writer.wait_closed()
            metrics.SESSION_SECONDS.observe(time.monotonic() - started)
            log.info(
                "smtpd.session",
                extra={
                    "listener": listener,
                    "remote": accepted.remote,
                    "proxied": accepted.proxied,
                    "duration_ms": round((time.monotonic() - started) * 1000),
                },
            )

    async def _limited(
        self, conn: Connection, listener: str, remote: str, admission: Admission
    ) -> None:
        """Over ``clientconnections`` or ``netconnections`` across the cluster: 421, close."""
        limit = f"{admission.scope}connections"
        metrics.LIMITED.labels(limit).inc()
        log.warning(
            "smtpd.limited", extra={"limit": limit, "remote": remote, "count": admission.count}
        )
        if listener not in self._qmtp:
            verdict = replies.TOO_MANY_CONNECTIONS
            if admission.scope == "net":
                verdict = replies.TOO_MANY_NET_CONNECTIONS
            await conn.write(verdict.smtp().encode() + b"\r\n")

    async def _packages(self, session: Session, conn: Connection) -> None:
        """QMTP: packages until the client closes, a framing error, or an hour (QMTP-01)."""
        idle = session.config.timeout
        databytes = session.config.databytes

        async def read(n: int) -> bytes:
            try:
                return await conn.exactly(n, idle)
            except Closed as err:
                raise Framing("connection closed inside a package") from err

        async def skip(n: int) -> None:
            await conn.skip(n, idle)

        session.ask_blocklists()  # at connect, answered for each package (defences #12)
        while not self.stopping:
            if not conn.buffer:
                try:
                    await conn.fill(idle)
                except Closed:
                    return  # between packages: a normal end
            package = await qmtp_protocol.read_package(read, skip, databytes)
            busy(True)
            try:
                verdicts, queued = await qmtp_protocol.decide(
                    package,
                    config=session.config,
                    client_ip=session.client.ip,
                    relayclient=session.relayclient,
                    domains=session.domains,
                    rcptcheck=session.rcptcheck,
                    queue=session.queue,
                    defences=session,
                )
            finally:
                package.close()
            await conn.write(b"".join(qmtp_protocol.netstring(v.qmtp()) for v in verdicts))
            busy(False)
            outcome = (
                "accepted"
                if queued
                else (
                    "deferred"
                    if verdicts and all(v.kind == "temporary" for v in verdicts)
                    else "rejected"
                )
            )
            metrics.MESSAGES.labels(outcome).inc()
            if replies.TOO_MANY_MESSAGES in verdicts:
                metrics.LIMITED.labels("clientmessages").inc()
                log.warning(
                    "smtpd.limited", extra={"limit": "clientmessages", "remote": session.client.ip}
                )
            if queued is not None:
                metrics.BYTES.inc(queued.size)
                log.debug(
                    "smtpd.accepted",
                    extra={"msg_id": queued.id, "qp": queued.qp, "remote": session.client.ip},
                )

    def _shutdown_reply(self) -> bytes:
        return replies.shutting_down(self._greeting()).smtp().encode() + b"\r\n"

    async def _dialogue(
        self, session: Session, conn: Connection, context: ssl.SSLContext | None
    ) -> None:
        timeout = session.config.timeout
        while True:
            limit = MAX_AUTH_LINE if session.reading_auth else MAX_LINE
            line, overlong = await conn.line(limit, timeout)
            if self.stopping:
                await conn.write(self._shutdown_reply())
                return
            busy(True)
            step = await session.line(line, overlong=overlong)
            verdict = step.verdict
            verb = line[:4].upper()
            if verdict is not None and verb == b"RCPT":
                metrics.RECIPIENTS.labels(str(verdict.code)).inc()  # rejections by reason
                if verdict is replies.TOO_MANY_RECIPIENTS:
                    metrics.LIMITED.labels("clientrecipients").inc()
                    log.warning(
                        "smtpd.limited",
                        extra={"limit": "clientrecipients", "remote": session.client.ip},
                    )
            if step.start_tls and context is not None:
                conn.discard()  # before the reply: after it come the handshake bytes
                conn.writer.write(conn.take_held() + step.wire())
                await conn.writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
                metrics.TLS.labels(session.client.listener).inc()
                session.tls_started()
            elif step.data:
                await conn.write(step.wire())
                step = await self._data(session, conn, timeout, session.config.data_timeout)
                await conn.write(step.wire())
            elif not conn.reply(verb, step.wire()):
                await conn.write(step.wire())
            busy(False)
            if step.close:
                return

    async def _data(self, session: Session, conn: Connection, idle: float, limit: float) -> Step:
        """DATA within ``limit`` seconds in all and ``idle`` per read (SMTPD-70)."""
        until = conn.now() + limit
        reader = session.data_reader()
        try:
            while True:
                if conn.buffer:
                    end = reader.feed(bytes(conn.buffer))
                    if reader.bare:
                        break
                    if end is not None:
                        del conn.buffer[:end]  # the rest is the next command(s)
                        break
                    conn.buffer.clear()
                    await reader.spill()  # SMTPD-73: memory stays bounded
                await conn.fill(idle, until)
            started = time.monotonic()
            step, queued = await session.finish_data(reader)
        finally:
            reader.close()
        verdict = step.verdict
        assert verdict is not None  # the end of DATA always decides
        metrics.MESSAGES.labels(verdict.outcome).inc()
        if verdict is replies.TOO_MANY_MESSAGES:
            metrics.LIMITED.labels("clientmessages").inc()
            log.warning(
                "smtpd.limited", extra={"limit": "clientmessages", "remote": session.client.ip}
            )
        if queued is not None:
            metrics.ENQUEUE_SECONDS.observe(time.monotonic() - started)
            metrics.BYTES.inc(queued.size)
            log.debug(  # at INFO it is send's new_msg and info_msg (SEND-40)
                "smtpd.accepted",
                extra={
                    "msg_id": queued.id,
                    "qp": queued.qp,
                    "remote": session.client.ip,
                    "size": queued.size,
                },
            )
        else:
            log.info(
                "smtpd.rejected",
                extra={
                    "stage": "data",
                    "reply": str(verdict.code),
                    "remote": session.client.ip,
                },
            )
        return step
