"""smtpd on the wire: raw socket dialogues against the real service on a real nats-server and
the queue store, checking exact replies and what lands in the queue (SMTPD-*)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import nats
import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.directory.domains import DirectoryDomains
from qmesh.directory.passwords import hash_password
from qmesh.directory.records import AccountRecord, DomainRecord
from qmesh.directory.store import Directory
from qmesh.runtime.service import Running, start
from qmesh.runtime.settings import Settings
from qmesh.store.files import FileStore
from services.smtpd.app import build
from services.smtpd.server import SmtpServer
from tests.servers import self_signed

pytestmark = pytest.mark.integration

DOMAIN = "mx.example.test"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"), DOMAIN)


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


@dataclass
class Stack:
    settings: Settings
    running: Running
    queue: FileStore
    control: Path

    @property
    def server(self) -> SmtpServer:
        return next(c for c in self.running.service.components if isinstance(c, SmtpServer))

    def port(self, listener: str = "smtp") -> int:
        return self.server.ports[listener]

    async def queued(self) -> list[bytes]:
        return [await self.queue.get(i.key) for i in await self.queue.list("mess/")]


@pytest.fixture
def settings(
    nats_url: str, tmp_path: Path, control_dir: Path, certificate: tuple[Path, Path]
) -> Settings:
    controls = {
        "me": DOMAIN,
        "locals": f"{DOMAIN}\nexample.test",
        "rcpthosts": f"{DOMAIN}\nexample.test",
        "relayclients": "127.0.0.2/32",
        "databytes": "2000",
        "rcptcheck": "0",
        "tlscert": str(certificate[0]),
        "tlskey": str(certificate[1]),
        "authblock": "1",  # failed logins of earlier tests on this NATS are forgotten at once
    }
    for name, text in controls.items():
        (control_dir / name).write_text(text + "\n")
    common: dict[str, Any] = {
        "nats_url": nats_url,
        "control": control_dir,
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


async def open_stack(settings: Settings) -> AsyncIterator[Stack]:
    running = await start(await build(settings), settings)
    conn = next(c for c in running.service.components if isinstance(c, NatsConnection))
    try:
        await asyncio.wait_for(conn.ready.wait(), 20)
        domains = next(c for c in running.service.components if isinstance(c, DirectoryDomains))
        await asyncio.wait_for(domains.loaded.wait(), 20)
        queue = FileStore(settings.store_path(), settings.queue_bucket)
        yield Stack(settings, running, queue, settings.control)
    finally:
        await running.stop()


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async for s in open_stack(settings):
        yield s


class Client:
    """A raw SMTP connection: exact bytes out, exact reply lines in."""

    opened: ClassVar[list[Client]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(
        cls, port: int, *, tls: bool = False, source: str | None = None, greet: bool = True
    ) -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=client_tls() if tls else None,
            local_addr=(source, 0) if source else None,
        )
        client = cls(reader, writer)
        cls.opened.append(client)
        if greet:
            assert (await client.reply()).startswith("220 ")
        return client

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> str:
        """One whole reply, multi-line ones joined with CRLF."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, "connection closed"
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                return "\r\n".join(lines)

    async def cmd(self, line: str) -> str:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def closed(self) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(1), 10) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while Client.opened:
        await Client.opened.pop().close()


async def transaction(c: Client, rcpt: str = f"alice@{DOMAIN}") -> None:
    assert await c.cmd("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
    assert await c.cmd(f"RCPT TO:<{rcpt}>") == "250 2.1.5 ok"
    assert await c.cmd("DATA") == "354 go ahead"


async def test_smtpd_12_pipelined_group_answered_in_order(stack: Stack) -> None:
    c = await Client.connect(stack.port())
    await c.send(
        b"EHLO client.test\r\nMAIL FROM:<joe@far.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<x@elsewhere.test>\r\nDATA\r\n"
    )
    assert (await c.reply()).endswith("250 SMTPUTF8")
    assert await c.reply() == "250 2.1.0 ok"
    assert await c.reply() == "250 2.1.5 ok"
    assert (await c.reply()).startswith("553 5.7.1 sorry, that domain isn't")
    assert await c.reply() == "354 go ahead"
    await c.send(b"Subject: piped\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")  # end and next commands
    assert (await c.reply()).startswith("250 2.0.0 ok ")
    assert await c.reply() == "250 2.0.0 ok"
    assert await c.reply() == f"221 2.0.0 {DOMAIN}"
    assert await c.closed()
    [body] = await stack.queued()
    assert body.endswith(b"\nSubject: piped\n\nbody\n")


async def test_smtpd_12_a_pipelined_group_is_answered_in_one_write(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMTPD-12 (throughput #10): the replies to MAIL and RCPT wait for DATA's, and leave
    together, as Postfix's smtpd answers a group; a command sent alone is answered at once."""
    written: list[bytes] = []
    write = asyncio.StreamWriter.write

    def counting(self: asyncio.StreamWriter, data: bytes | bytearray | memoryview) -> None:
        written.append(bytes(data))
        write(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", counting)
    c = await Client.connect(stack.port())
    assert (await c.cmd("EHLO client.test")).endswith("250 SMTPUTF8")
    assert await c.cmd("RSET") == "250 2.0.0 flushed"  # alone: answered before the next one comes
    await c.send(
        b"MAIL FROM:<joe@far.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<x@elsewhere.test>\r\nDATA\r\n"
    )
    assert await c.reply() == "250 2.1.0 ok"
    assert await c.reply() == "250 2.1.5 ok"
    assert (await c.reply()).startswith("553 5.7.1 sorry, that domain isn't")
    assert await c.reply() == "354 go ahead"
    [group] = [w for w in written if w.startswith(b"250 2.1.0 ok")]
    assert group.endswith(b"354 go ahead\r\n") and group.count(b"\r\n") == 4
    await c.send(b"Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert (await c.reply()).startswith("250 2.0.0 ok ")
    assert await c.reply() == f"221 2.0.0 {DOMAIN}"


async def test_smtpd_54_57_58_stored_form_and_trace(stack: Stack) -> None:
    """SMTPD-03: the client's address from the connection; SMTPD-52: 8-bit bytes kept."""
    c = await Client.connect(stack.port())
    assert await c.cmd("HELO client.test") == f"250 {DOMAIN}"
    await transaction(c)
    await c.send(b"Subject: s\r\n\r\n..dot\r\n\xff 8bit\r\n.\r\n")
    reply = await c.reply()
    assert reply.startswith("250 2.0.0 ok ") and " qp " in reply
    [body] = await stack.queued()
    lines = body.split(b"\n")
    assert lines[0].startswith(b"Received: (qmail ") and b"invoked from network" in lines[0]
    assert lines[1] == b"Received: from unknown (HELO client.test) (127.0.0.1)"
    assert lines[2].startswith(f"  by {DOMAIN} with SMTP; ".encode())
    assert lines[3:] == [b"Subject: s", b"", b".dot", b"\xff 8bit", b""]


@pytest.mark.parametrize(
    "smuggled",
    [
        b"a\r\n\n.\nMAIL FROM:<evil@x.test>\r\n",  # <LF>.<LF>
        b"a\r\n\n.\r\nMAIL FROM:<evil@x.test>\r\n",  # <LF>.<CR><LF>
        b"a\r\n\r.\r\nMAIL FROM:<evil@x.test>\r\n",  # <CR>.<CR><LF>
        b"a\r\n.\nMAIL FROM:<evil@x.test>\r\n",  # <CR><LF>.<LF>
        b"a\r\n.\r\r\nMAIL FROM:<evil@x.test>\r\n",  # <CR><LF>.<CR>
    ],
)
async def test_smtpd_51_smuggling_is_refused_and_nothing_is_queued(
    stack: Stack, smuggled: bytes
) -> None:
    c = await Client.connect(stack.port())
    await transaction(c)
    await c.send(smuggled + b"RCPT TO:<x@example.test>\r\nDATA\r\nsmuggled\r\n.\r\n")
    assert await c.reply() == "451 4.5.2 See https://cr.yp.to/docs/smtplf.html."
    assert await c.closed()
    assert await stack.queued() == []


async def test_smtpd_55_databytes_and_53_hops_over_the_wire(stack: Stack) -> None:
    c = await Client.connect(stack.port())
    await transaction(c)
    await c.send(b"x" * 2001 + b"\r\n.\r\n")
    assert await c.reply() == (
        "552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)"
    )
    await transaction(c)
    await c.send(b"Received: hop\r\n" * 100 + b"\r\n.\r\n")
    assert await c.reply() == "554 5.4.6 too many hops, this message is looping (#5.4.6)"
    assert await stack.queued() == []


async def test_smtpd_72_overlong_line_is_refused_and_the_session_goes_on(stack: Stack) -> None:
    c = await Client.connect(stack.port())
    await c.send(b"NOOP " + b"x" * 5000 + b"\r\n")
    assert await c.reply() == "500 5.5.2 line too long"
    assert await c.cmd("NOOP") == "250 2.0.0 ok"


async def test_smtpd_70_idle_timeout(settings: Settings) -> None:
    (settings.control / "timeoutsmtpd").write_text("1\n")
    async for stack in open_stack(settings):
        c = await Client.connect(stack.port())
        assert await c.reply() == "451 4.4.2 timeout (#4.4.2)"
        assert await c.closed()


async def test_smtpd_80_starttls_discards_injected_plaintext(stack: Stack) -> None:
    c = await Client.connect(stack.port())
    assert "250-STARTTLS" in await c.cmd("EHLO client.test")
    await c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")  # CVE-2011-0411 class
    assert await c.reply() == "220 2.0.0 ready to start TLS"
    await c.writer.start_tls(client_tls())
    assert await c.cmd("RCPT TO:<alice@example.test>") == "503 5.5.1 MAIL first (#5.5.1)"
    ehlo = await c.cmd("EHLO client.test")
    assert "STARTTLS" not in ehlo
    await transaction(c)
    await c.send(b"Subject: tls\r\n\r\n.\r\n")
    assert (await c.reply()).startswith("250 ")
    [body] = await stack.queued()
    assert b"with ESMTPS;" in body


async def test_smtpd_81_82_87_submission_requires_auth_and_relays_after_it(stack: Stack) -> None:
    nc = await nats.connect(stack.settings.nats_url)
    try:
        directory = await Directory.open(nc.jetstream())
        with contextlib.suppress(Exception):
            await directory.create_domain(DomainRecord(name=DOMAIN))
        verifier = await asyncio.to_thread(hash_password, PASSWORD)
        with contextlib.suppress(Exception):
            await directory.create_account(
                AccountRecord(domain=DOMAIN, name="alice", verifier=verifier)
            )
    finally:
        await nc.close()
    c = await Client.connect(stack.port("submission"))
    ehlo = await c.cmd("EHLO client.test")
    assert "AUTH" not in ehlo and "STARTTLS" in ehlo  # SMTPD-81: only once TLS is active
    assert await c.cmd("MAIL FROM:<alice@example.test>") == "530 5.7.0 authentication required"
    s = await Client.connect(stack.port("smtps"), tls=True)  # SMTPD-87
    assert "250-AUTH PLAIN LOGIN" in await s.cmd("EHLO client.test")
    plain = "AGFsaWNlAHdyb25n"  # \0alice\0wrong
    assert await s.cmd(f"AUTH PLAIN {plain}") == "535 5.7.8 authentication credentials invalid"
    good = base64.b64encode(f"\0alice@{DOMAIN}\0{PASSWORD}".encode()).decode()
    assert await s.cmd(f"AUTH PLAIN {good}") == "235 2.7.0 authentication successful"
    await transaction(s, rcpt="someone@elsewhere.test")  # a relay client now
    await s.send(b"Subject: out\r\n\r\n.\r\n")
    assert (await s.reply()).startswith("250 ")
    [body] = await stack.queued()
    assert b"with ESMTPSA;" in body


async def test_smtpd_86_proxy_header_names_the_client(settings: Settings) -> None:
    (settings.control / "proxyclients").write_text("127.0.0.1/32\n")
    async for stack in open_stack(settings):
        c = await Client.connect(stack.port(), greet=False)
        await c.send(b"PROXY TCP4 127.0.0.2 10.0.0.1 40000 25\r\n")  # a relay client's address
        assert (await c.reply()).startswith("220 ")
        await transaction(c, rcpt="someone@elsewhere.test")  # relayclients: 127.0.0.2
        await c.send(b"x\r\n.\r\n")
        assert (await c.reply()).startswith("250 ")
        [body] = await stack.queued()
        assert b"Received: from unknown (127.0.0.2)" in body
        d = await Client.connect(stack.port(), greet=False)
        await d.send(b"EHLO client.test\r\n")  # a trusted peer without a header: cut off
        assert await d.closed()


async def test_smtpd_71_disconnect_inside_data_queues_nothing(stack: Stack) -> None:
    c = await Client.connect(stack.port())
    await transaction(c)
    await c.send(b"Subject: half\r\n\r\nthe client goes away here")
    await c.close()
    await asyncio.sleep(0.5)
    assert await stack.queued() == []
    d = await Client.connect(stack.port())  # the service is still fine
    assert await d.cmd("NOOP") == "250 2.0.0 ok"


async def test_shutdown_answers_421_to_the_next_command(settings: Settings) -> None:
    async for stack in open_stack(settings):
        c = await Client.connect(stack.port())
        assert await c.cmd("NOOP") == "250 2.0.0 ok"
        stopping = asyncio.create_task(stack.running.stop())
        assert await c.reply() == f"421 4.3.2 {DOMAIN} service shutting down, closing connection"
        assert await c.closed()
        await stopping


def qmtp_package(message: bytes, sender: bytes, *rcpts: bytes) -> bytes:
    def ns(data: bytes) -> bytes:
        return b"%d:%s," % (len(data), data)

    return ns(message) + ns(sender) + ns(b"".join(ns(r) for r in rcpts))


async def read_netstring(reader: asyncio.StreamReader) -> bytes:
    length = int((await asyncio.wait_for(reader.readuntil(b":"), 10))[:-1])
    data = await reader.readexactly(length)
    assert await reader.readexactly(1) == b","
    return data


async def test_qmtp_05_10_15_packages_on_the_wire(stack: Stack) -> None:
    """Two pipelined packages answered in order; a framing error closes and queues nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port("qmtp"))
    try:
        writer.write(
            qmtp_package(b"\rSubject: one\r\n\r\nhi\r\n", b"joe@far.test", b"alice@example.test")
            + qmtp_package(
                b"\nSubject: two\n\nhi\n",
                b"joe@far.test",
                b"x@elsewhere.test",
                b"alice@example.test",
            )
        )
        await writer.drain()
        assert (await read_netstring(reader)).startswith(b"Kok ")
        assert await read_netstring(reader) == (
            b"Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
        )
        assert (await read_netstring(reader)).startswith(b"Kok ")
        writer.write(b"12:\nSubject: thr")  # then a bad comma
        writer.write(b"ee;")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(1), 10) == b""
    finally:
        writer.close()
    bodies = sorted(await stack.queued())
    assert len(bodies) == 2
    assert all(b"with QMTP;" in b and b"HELO" not in b for b in bodies)
    assert bodies[0].endswith(b"\nSubject: one\n\nhi\n") or bodies[1].endswith(
        b"\nSubject: one\n\nhi\n"
    )


# -- the dialogue over a raw socket, one rule a step ----------------------------------------

RELAY = "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
BADMAILFROM = "553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1)"
SIZE = "552 5.3.4 message size exceeds fixed maximum message size"
HELP = "214 2.0.0 qmesh: qmail's behaviour, see https://cr.yp.to/qmail.html"
DIALOGUE: list[tuple[str, bytes, str]] = [
    ("SMTPD-02", b"MAIL FROM:<joe@far.test>", "250 2.1.0 ok"),
    ("SMTPD-13", b"EXPN staff", "502 5.5.1 unimplemented (#5.5.1)"),
    ("SMTPD-14", b"NOOP a\0b", "501 5.5.2 syntax error"),
    ("SMTPD-23", b"HELO", "501 5.5.4 HELO/EHLO requires a domain"),
    ("SMTPD-20", b"HELO client.test", f"250 {DOMAIN}"),
    ("SMTPD-40", b"RCPT TO:<alice@example.test>", "503 5.5.1 MAIL first (#5.5.1)"),
    ("SMTPD-50", b"DATA", "503 5.5.1 MAIL first (#5.5.1)"),
    ("SMTPD-33", b"MAIL FROM:<joe@far.test> SIZE=10", "555 5.5.4 unsupported parameter"),
    ("SMTPD-21", b"EHLO client.test", f"250-{DOMAIN}"),
    ("SMTPD-56", b"MAIL FROM:<joe@far.test> SIZE=2001", SIZE),
    ("SMTPD-31", b"MAIL <joe@far.test>", "501 5.5.4 syntax error"),
    ("SMTPD-85", "MAIL FROM:<jöe@far.test>".encode(), "553 5.6.7 non-ASCII address requires SMTPUTF8"),  # noqa: E501
    ("SMTPD-34", b"MAIL FROM: <>", "250 2.1.0 ok"),
    ("SMTPD-47", b"RCPT TO:<>", "501 5.1.3 bad recipient address syntax"),
    ("SMTPD-32", b"RCPT TO:<" + b"a" * 901 + b"@x.test>", "555 5.5.4 syntax error (#5.5.4)"),
    ("SMTPD-42", b"RCPT TO:<x@elsewhere.test>", RELAY),
    ("SMTPD-43", b"RCPT TO:<x%elsewhere.test@example.test>", "553 5.7.1 sorry, relaying denied"),
    ("SMTPD-42", b"RCPT TO:<@example.test:x@elsewhere.test>", RELAY),
    ("SMTPD-42", b"RCPT TO:<x@[192.0.2.1]>", RELAY),
    ("SMTPD-41", b"RCPT TO:<postmaster@[127.0.0.1]>", "250 2.1.5 ok"),
    ("SMTPD-42", b"RCPT TO:<Postmaster>", "250 2.1.5 ok"),
    ("SMTPD-46", b'RCPT TO:<"x@elsewhere.test"@example.test>', "250 2.1.5 ok"),
    ("SMTPD-44", b"RCPT TO:<elsewhere.test!x@example.test>", "452 4.5.3 too many recipients"),
    ("SMTPD-30", b"MAIL FROM:<spammer@bad.test>", "250 2.1.0 ok"),
    ("SMTPD-35", b"RCPT TO:<alice@example.test>", BADMAILFROM),
    ("SMTPD-61", b"RSET", "250 2.0.0 flushed"),
    ("SMTPD-62", b"NOOP anything", "250 2.0.0 ok"),
    ("SMTPD-63", b"VRFY alice", "252 2.0.0 send some mail, i'll try my best"),
    ("SMTPD-64", b"HELP", HELP),
    ("SMTPD-65", b"QUIT", f"221 2.0.0 {DOMAIN}"),
]  # fmt: skip


async def test_smtpd_dialogue_over_a_raw_socket(settings: Settings) -> None:
    """SMTPD-01..65 step by step on the wire; each reply exact (SMTPD-83 enhanced codes)."""
    (settings.control / "maxrcpt").write_text("3\n")
    (settings.control / "badmailfrom").write_text("spammer@bad.test\n")
    (settings.control / "percenthack").write_text("example.test\n")
    async for stack in open_stack(settings):
        c = await Client.connect(stack.port(), greet=False)
        assert await c.reply() == f"220 {DOMAIN} ESMTP"  # SMTPD-01
        for rule, line, expected in DIALOGUE:
            got = await c.cmd(line.decode("utf-8", "surrogateescape"))
            assert got.split("\r\n")[0] == expected, rule
        assert await c.closed()


async def test_smtpd_73_sessions_per_listener_are_capped(settings: Settings) -> None:
    """With QMESH_MAX_SESSIONS 1 a second client waits until the first one leaves."""
    async for stack in open_stack(settings.model_copy(update={"max_sessions": 1})):
        first = await Client.connect(stack.port())
        second = await Client.connect(stack.port(), greet=False)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(second.reader.readline(), 0.5)  # not served yet
        assert await first.cmd("QUIT") == f"221 2.0.0 {DOMAIN}"
        assert (await second.reply()).startswith("220 ")


async def test_qmtp_01_a_session_ends_after_its_time_limit(stack: Stack) -> None:
    stack.server.qmtp_session_limit = 0.5  # an hour in production
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port("qmtp"))
    try:
        assert await asyncio.wait_for(reader.read(1), 10) == b""  # closed by the server
    finally:
        writer.close()
