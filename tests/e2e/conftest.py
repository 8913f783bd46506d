"""End-to-end fixtures: an SMTP sink standing in for the world, and the reference controls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class Sink:
    """An SMTP server on a free loopback port that records what it is sent (the remote MX)."""

    port: int = 0
    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> RCPT reply
    attempts: list[str] = field(default_factory=list)  # every RCPT address, answered or not

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.attempts.append(address)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(
            Received(
                envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b""
            )
        )
        return "250 2.0.0 sunk"


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def serve() -> asyncio.Server:
        server = await loop.create_server(lambda: SMTP(sink), "127.0.0.1", 0)
        sink.port = server.sockets[0].getsockname()[1]
        ready.set()
        return server

    server_box: list[asyncio.Server] = []

    def run() -> None:
        server_box.append(loop.run_until_complete(serve()))
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield sink

    async def close() -> None:
        server_box[0].close()
        await server_box[0].wait_closed()

    asyncio.run_coroutine_threadsafe(close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def profile_controls(sink_port: int) -> dict[str, str]:
    """The reference profile's controls (PROFILE-02), with the sink on loopback."""
    return {
        "me": "mx.example.test",
        "locals": "mx.example.test\nexample.test",
        "rcpthosts": "example.test\nmx.example.test\nvirt.example.test\nhosted.test",
        "virtualdomains": "virt.example.test:carol",
        "percenthack": "example.test",
        "badmailfrom": "spammer@bad.test\n@evil.test",
        "databytes": "1000000",
        "timeoutsmtpd": "30",
        "smtproutes": f"sink.test:127.0.0.1:{sink_port}\nrefused.test:127.0.0.1:1",
        "relayclients": "127.0.0.2/32",  # tests relay from 127.0.0.2; 127.0.0.1 is a stranger
        "pop3plaintext": "1",
    }
