"""Defences at the door on the wire (defences #12): two smtpd replicas on one nats-server share
their limits, and password guessing is slowed, blocked and cannot tell accounts apart.

Each test has a nats-server of its own (the counts live in its ``qmesh_limits`` bucket) and
speaks from loopback addresses of its own (127.0.x.y), as distinct clients would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest

from qmesh.cli.natsd import NatsServer
from qmesh.directory.passwords import hash_password
from qmesh.directory.records import AccountRecord, DomainRecord
from qmesh.directory.store import Directory
from qmesh.runtime.settings import Settings
from tests.integration.test_smtpd import DOMAIN, PASSWORD, Client, Stack, open_stack
from tests.servers import self_signed

pytestmark = pytest.mark.integration

CLIENT_LIMIT = "421 4.7.0 too many connections from your address (#4.7.0)"
NET_LIMIT = "421 4.7.0 too many connections from your network (#4.7.0)"
RATE_LIMIT = "451 4.7.0 too many messages from your address, try again later (#4.7.0)"
RCPT_RATE_LIMIT = "451 4.7.0 too many recipients from your address, try again later (#4.7.0)"
BLOCKED = "421 4.7.0 too many failed logins, try again later (#4.7.0)"
FAILED = "535 5.7.8 authentication credentials invalid"


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """The clients of this test, closed in its own loop (``Client.opened`` is shared)."""
    yield
    while Client.opened:
        await Client.opened.pop().close()


def make_settings(nats_url: str, tmp_path: Path, controls: dict[str, str]) -> Settings:
    control = tmp_path / "control"
    control.mkdir(exist_ok=True)
    cert, key = self_signed(tmp_path / "tls", DOMAIN)
    base = {
        "me": DOMAIN,
        "locals": f"{DOMAIN}\nexample.test",
        "rcpthosts": f"{DOMAIN}\nexample.test",
        "rcptcheck": "0",
        "tlscert": str(cert),
        "tlskey": str(key),
    }
    for name, text in {**base, **controls}.items():
        (control / name).write_text(text + "\n")
    common: dict[str, Any] = {
        "nats_url": nats_url,
        "control": control,
        "store": f"file://{tmp_path / 'store'}",
        "listen_host": "127.0.0.1",
        "http_host": "127.0.0.1",
        "http_port": 0,
        "smtp_port": 0,
        "submission_port": 0,
        "smtps_port": 0,
        "qmtp_port": 0,
    }
    return Settings(**common)


@contextlib.asynccontextmanager
async def replicas(settings: Settings, n: int = 2) -> AsyncIterator[list[Stack]]:
    async with contextlib.AsyncExitStack() as exits:
        stacks = [
            await exits.enter_async_context(contextlib.asynccontextmanager(open_stack)(settings))
            for _ in range(n)
        ]
        yield stacks


async def greeting(port: int, source: str) -> tuple[Client, str]:
    c = await Client.connect(port, source=source, greet=False)
    return c, await c.reply()


async def test_a_connection_limit_of_n_admits_n_across_two_replicas(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(
        private_nats.url, tmp_path, {"clientconnections": "3", "netconnections": "5"}
    )
    async with replicas(settings) as (a, b):
        ports = [a.port(), b.port()]
        held, replies = [], []
        for i in range(6):
            c, reply = await greeting(ports[i % 2], "127.0.9.1")
            replies.append(reply)
            if reply.startswith("220 "):
                held.append(c)
        assert sum(r.startswith("220 ") for r in replies) == 3
        assert replies.count(CLIENT_LIMIT) == 3  # on either replica
        # another address of the same /24 takes the network's two places left, then no more
        others = [await greeting(ports[i % 2], f"127.0.9.{10 + i}") for i in range(3)]
        assert [r for _, r in others] == [f"220 {DOMAIN} ESMTP"] * 2 + [NET_LIMIT]
        assert (await greeting(a.port(), "127.0.10.1"))[1].startswith("220 ")  # another /24
        # a closed connection gives its place back (in the background)
        assert await held[0].cmd("QUIT") == f"221 2.0.0 {DOMAIN}"
        deadline = time.monotonic() + 10
        while True:
            _, reply = await greeting(ports[1], "127.0.9.1")
            if reply.startswith("220 ") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert reply.startswith("220 ")


async def test_many_short_connections_under_the_limit_are_never_refused(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """Twelve clients at a time from one address, 240 connections in all, under a limit of 16
    on two replicas: every place is given back, however hard the releases race for the one key
    of the address, so none is ever refused (a release lost to contention used to hold its
    place for the session's lifetime)."""
    settings = make_settings(
        private_nats.url, tmp_path, {"clientconnections": "16", "netconnections": "32"}
    )
    async with replicas(settings) as (a, b):
        ports = [a.port(), b.port()]

        async def one(i: int) -> str:
            c, reply = await greeting(ports[i % 2], "127.0.12.1")
            if reply.startswith("220 "):
                await c.cmd("QUIT")
            await c.close()
            with contextlib.suppress(ValueError):
                Client.opened.remove(c)
            return reply

        replies: list[str] = []
        for start in range(0, 240, 12):
            replies += await asyncio.gather(*(one(i) for i in range(start, start + 12)))
        assert [r for r in replies if not r.startswith("220 ")] == []


async def test_relayclients_are_not_counted(private_nats: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(
        private_nats.url, tmp_path, {"clientconnections": "1", "relayclients": "127.0.11.1"}
    )
    async with replicas(settings, 1) as (a,):
        for _ in range(3):
            assert (await greeting(a.port(), "127.0.11.1"))[1].startswith("220 ")


async def send(c: Client, subject: str) -> str:
    assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
    assert await c.cmd(f"RCPT TO:<alice@{DOMAIN}>") == "250 2.1.5 ok"
    assert await c.cmd("DATA") == "354 go ahead"
    return await c.cmd(f"Subject: {subject}\r\n\r\nbody\r\n.")


async def test_a_message_rate_of_n_admits_n_across_two_replicas(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(private_nats.url, tmp_path, {"clientmessages": "4"})
    if time.time() % 60 > 50:  # the whole test inside one minute's window
        await asyncio.sleep(61 - time.time() % 60)
    async with replicas(settings) as (a, b):
        clients = [(await greeting(s.port(), "127.0.9.2"))[0] for s in (a, b)]
        replies = [await send(clients[i % 2], f"m{i}") for i in range(7)]
        assert sum(r.startswith("250 2.0.0 ok ") for r in replies) == 4
        assert replies.count(RATE_LIMIT) == 3
        assert len(await a.queued()) == 4  # both replicas share the queue store
        other = (await greeting(b.port(), "127.0.9.3"))[0]  # another client has its own count
        assert (await send(other, "other")).startswith("250 ")


async def test_a_recipient_rate_of_n_answers_the_rcpt_past_it_across_two_replicas(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """clientrecipients is counted at RCPT: the recipient past it hears 451 4.7.0 there, and
    the message goes with the recipients accepted before it."""
    settings = make_settings(private_nats.url, tmp_path, {"clientrecipients": "3"})
    if time.time() % 60 > 50:  # the whole test inside one minute's window
        await asyncio.sleep(61 - time.time() % 60)
    async with replicas(settings) as (a, b):
        c = (await greeting(a.port(), "127.0.9.4"))[0]
        assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
        assert await c.cmd(f"RCPT TO:<alice@{DOMAIN}>") == "250 2.1.5 ok"
        assert await c.cmd(f"RCPT TO:<bob@{DOMAIN}>") == "250 2.1.5 ok"
        assert await c.cmd("DATA") == "354 go ahead"
        assert (await c.cmd("Subject: two\r\n\r\nbody\r\n.")).startswith("250 2.0.0 ok ")
        d = (await greeting(b.port(), "127.0.9.4"))[0]  # the other replica, the same client
        assert await d.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
        assert await d.cmd(f"RCPT TO:<carol@{DOMAIN}>") == "250 2.1.5 ok"
        assert await d.cmd(f"RCPT TO:<dave@{DOMAIN}>") == RCPT_RATE_LIMIT
        assert await d.cmd(f"RCPT TO:<erin@{DOMAIN}>") == RCPT_RATE_LIMIT
        assert await d.cmd("DATA") == "354 go ahead"
        assert (await d.cmd("Subject: one\r\n\r\nbody\r\n.")).startswith("250 2.0.0 ok ")
        bodies = await a.queued()
        assert len(bodies) == 2
        other = (await greeting(b.port(), "127.0.9.5"))[0]  # another client has its own count
        assert (await send(other, "other")).startswith("250 ")


# -- login throttling ------------------------------------------------------------------------


async def add_alice(settings: Settings) -> None:
    nc = await nats.connect(settings.nats_url)
    try:
        directory = await Directory.open(nc.jetstream())
        await directory.create_domain(DomainRecord(name=DOMAIN))
        verifier = await asyncio.to_thread(hash_password, PASSWORD)
        await directory.create_account(
            AccountRecord(domain=DOMAIN, name="alice", verifier=verifier)
        )
    finally:
        await nc.close()


def plain(login: str, password: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{login}\0{password}".encode()).decode()


async def auth(stack: Stack, source: str, login: str, password: str) -> tuple[str, float]:
    """One AUTH on SMTPS from ``source``: the reply and how long it took."""
    c = await Client.connect(stack.port("smtps"), tls=True, source=source)
    await c.cmd("EHLO client.test")
    started = time.monotonic()
    reply = await c.cmd(plain(login, password))
    took = time.monotonic() - started
    await c.close()
    return reply, took


async def test_password_guessing_is_slowed_then_blocked_on_submission(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(private_nats.url, tmp_path, {"authfailures": "10", "authdelay": "40"})
    async with replicas(settings) as (a, b):
        await add_alice(settings)
        outcomes = [await auth((a, b)[i % 2], "127.0.9.4", f"alice@{DOMAIN}", f"guess{i}")
                    for i in range(50)]  # fmt: skip
        replies = [r for r, _ in outcomes]
        assert replies[:10] == [FAILED] * 10 and replies[10:] == [BLOCKED] * 40
        delays = [t for _, t in outcomes[:10]]
        assert delays[9] > delays[0] + 0.25  # 400 ms against 40 ms: the delay grows
        assert max(t for _, t in outcomes[10:]) < delays[9]  # a block costs nothing to check
        # the right password, even from the blocked address, is refused without a look
        assert (await auth(a, "127.0.9.4", f"alice@{DOMAIN}", PASSWORD))[0] == BLOCKED
        # and from another address it still works
        assert (await auth(b, "127.0.9.5", f"alice@{DOMAIN}", PASSWORD))[0] == (
            "235 2.7.0 authentication successful"
        )


async def test_unknown_account_and_wrong_password_take_the_same_time(
    private_nats: NatsServer, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    settings = make_settings(private_nats.url, tmp_path, {"authdelay": "20"})
    async with replicas(settings, 1) as (a,):
        await add_alice(settings)
        wrong, unknown = [], []
        for i in range(15):  # each from a fresh address: the same first-failure delay
            reply, took = await auth(a, f"127.0.12.{2 * i + 1}", f"alice@{DOMAIN}", "wrong")
            assert reply == FAILED
            wrong.append(took)
            reply, took = await auth(a, f"127.0.12.{2 * i + 2}", f"nobody{i}@{DOMAIN}", "wrong")
            assert reply == FAILED
            unknown.append(took)
        w, u = statistics.median(wrong), statistics.median(unknown)
        record_property("median_ms", {"wrong_password": w * 1000, "unknown_account": u * 1000})
        assert abs(w - u) < max(0.25 * min(w, u), 0.02), (w, u)
