"""One mail-reading service (pop3d or imapd) on a test's own nats-server, with TLS, plaintext
logins allowed and one account, for the login-throttling tests (defences #12)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats

from qmesh.bus.connection import NatsConnection
from qmesh.directory.passwords import hash_password
from qmesh.directory.records import AccountRecord
from qmesh.directory.store import Directory
from qmesh.runtime.service import Service, start
from qmesh.runtime.settings import Settings
from tests.servers import self_signed

PASSWORD = "correct horse battery"
S = TypeVar("S")


@contextlib.asynccontextmanager
async def login_site(
    build: Callable[[Settings], Awaitable[Service]],
    server: type[S],
    ports: dict[str, Any],
    nats_url: str,
    tmp_path: Path,
    domain: str,
    controls: dict[str, str],
) -> AsyncIterator[S]:
    """The service ``build`` makes, listening on free ports (``ports`` names them as settings),
    its listener component yielded once ``alice@domain`` exists with :data:`PASSWORD`."""
    control = tmp_path / "control"
    control.mkdir()
    cert, key = self_signed(tmp_path / "tls", domain)
    base = {"me": domain, "locals": domain, "pop3plaintext": "1", "tlscert": str(cert),
            "tlskey": str(key)}  # fmt: skip
    for name, text in {**base, **controls}.items():
        (control / name).write_text(text + "\n")
    settings = Settings(
        nats_url=nats_url, control=control, store=f"file://{tmp_path / 'store'}",
        listen_host="127.0.0.1", http_host="127.0.0.1", http_port=0, **ports,
    )  # fmt: skip
    running = await start(await build(settings), settings)
    try:
        conn = next(c for c in running.service.components if isinstance(c, NatsConnection))
        await asyncio.wait_for(conn.ready.wait(), 20)
        nc = await nats.connect(nats_url)
        try:
            directory = await Directory.open(nc.jetstream())
            verifier = await asyncio.to_thread(hash_password, PASSWORD)
            await directory.create_account(
                AccountRecord(domain=domain, name="alice", verifier=verifier)
            )
        finally:
            await nc.close()
        yield next(c for c in running.service.components if isinstance(c, server))
    finally:
        await running.stop()


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context
