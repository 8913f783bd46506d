"""An SMTP listener in the service's own loop (``loop.create_server``, so port 0 works)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiosmtpd.smtp import SMTP

from services.smtpd import metrics
from services.smtpd.handler import SmtpdConfig, SmtpHandler

log = logging.getLogger(__name__)


class SmtpListener:
    def __init__(
        self,
        *,
        name: str,
        handler: SmtpHandler,
        config: Callable[[], SmtpdConfig],
        host: str,
        port: int,
        timeout: Callable[[], float],
    ) -> None:
        self.name = name
        self._handler = handler
        self._config = config
        self._host = host
        self._port = port
        self._timeout = timeout
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        metrics.SESSIONS.labels(self.name).inc()
        return SMTP(
            self._handler,
            hostname=self._config().greeting,
            ident="ESMTP",
            data_size_limit=None,
            decode_data=False,
            timeout=self._timeout(),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self._host, self._port)
        log.info("smtpd.listening", extra={"listener": self.name, "port": self.port})

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 20)
            except TimeoutError:
                log.warning("smtpd.sessions_cut", extra={"listener": self.name})

    async def check(self) -> None:
        if self._server is None or not self._server.is_serving():
            raise RuntimeError(f"{self.name} listener not serving")
