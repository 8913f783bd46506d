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
from services.pop3d import metrics
from services.pop3d.protocol import MAX_SASL_LINE
from services.pop3d.session import Policy, Session

log = logging.getLogger(__name__)

Listener = Literal["pop3", "pop3s"]
IDLE_TIMEOUT = 1200.0  # POP3-25
STOP_GRACE = 10.0
TOO_MANY = b"-ERR [SYS/TEMP] too many connections from your address\r\n"  # maxconnip
LIMITED = {  # clientconnections, netconnections: across the cluster (docs/defences.md)
    "client": b"-ERR [IN-USE] too many connections from your address\r\n",
    "net": b"-ERR [IN-USE] too many connections from your network\r\n",
}
LIFETIME = 2 * 3600.0  # a POP3 connection's place lapses after this (a crashed replica's too)
READ_LIMIT = MAX_SASL_LINE + 2  # longer lines are cut and answered "-ERR line too long"

SessionFactory = Callable[[Policy, str], Session]  # (policy, client address) -> Session
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
            async with asyncio.timeout(idle):
                line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as err:
            async with asyncio.timeout(idle):
                chunk = await reader.readexactly(err.consumed)
            head = head or chunk[:READ_LIMIT]
            overlong = True
            continue
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError) as err:
            raise Closed(type(err).__name__) from err
        return (head, True) if overlong else (line, False)


class Pop3Server(Listeners):
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
        max_sessions: int = 500,
        maxconnip: Callable[[], int] = lambda: 0,
        idle_timeout: float = IDLE_TIMEOUT,
        anvil: Anvil | None = None,
    ) -> None:
        self._sessions = sessions
        self._anvil = anvil
        self._policy = policy
        self._tls = tls
        self._idle_timeout = idle_timeout
        super().__init__(
            service="pop3d",
            host=host,
            ports={str(name): port for name, port in ports.items()},
            handler=self._connection,
            proxyclients=proxyclients,
            grace=STOP_GRACE,
            on_proxy=lambda result: metrics.PROXIED.labels(result).inc(),
            max_sessions=max_sessions,
            maxconnip=maxconnip,
            too_many=lambda listener: TOO_MANY if listener == "pop3" else b"",
        )

    async def _connection(self, accepted: Accepted) -> None:
        listener = accepted.listener
        metrics.SESSIONS.labels(listener).inc()
        started = time.monotonic()
        context = self._tls()
        session: Session | None = None
        writer: asyncio.StreamWriter | None = None
        admission: Admission | None = None
        try:
            if listener == "pop3s" and context is None:
                log.warning("pop3d.tls_unavailable", extra={"listener": listener})
                return
            reader, writer = await accepted.open(
                context if listener == "pop3s" else None, limit=READ_LIMIT
            )
            if self._anvil is not None:
                admission = await self._anvil.admit(accepted.remote, LIFETIME)
                if not admission.allowed:
                    limit = f"{admission.scope}connections"
                    metrics.LIMITED.labels(limit).inc()
                    log.warning(
                        "pop3d.limited",
                        extra={"limit": limit, "remote": accepted.remote, "count": admission.count},
                    )
                    await self._write(writer, LIMITED[admission.scope])
                    return
            policy = self._policy(context is not None, listener == "pop3s")
            session = self._sessions(policy, accepted.remote)
            await self._write(writer, session.greeting())
            await self._dialogue(session, reader, writer, context)
        except (Closed, ConnectionError, ssl.SSLError, TimeoutError) as err:
            log.debug("pop3d.disconnected", extra={"reason": type(err).__name__})
        except asyncio.CancelledError:
            log.debug("pop3d.disconnected", extra={"reason": "stopping"})
        except Exception:
            log.exception("pop3d.session_failed")
        finally:
            if admission is not None and self._anvil is not None:
                self._anvil.release(admission)
            if session is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(session.close())
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 5)
            metrics.SESSION_SECONDS.observe(time.monotonic() - started)
            log.info(
                "pop3d.session",
                extra={
                    "listener": listener,
                    "remote": accepted.remote,
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
        while not self.stopping:
            line, overlong = await read_line(reader, self._idle_timeout)
            busy(True)
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
            busy(False)
            if step.close:
                return

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await drained(writer)
