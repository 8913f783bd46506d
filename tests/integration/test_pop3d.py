"""pop3d on a real nats-server and a real store (SeaweedFS S3 and the directory store).

The service is built by its own ``app.build`` and driven with ``poplib`` and raw sockets.
Messages are placed the way ``local`` places them: ``put()`` under ``new/<unique>`` with the
unique name of :func:`qmesh.store.maildir.unique_name`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import poplib
import ssl
import struct
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import nats
import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.contract.ids import new_queue_id
from qmesh.directory.authenticate import Account
from qmesh.directory.passwords import hash_password
from qmesh.directory.records import AccountRecord, DomainRecord
from qmesh.directory.store import Directory
from qmesh.runtime.service import Running, start
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobStore
from qmesh.store.factory import open_store
from qmesh.store.files import FileStore
from qmesh.store.keys import mailbox_key, mailbox_prefix
from qmesh.store.maildir import pop3_size, unique_name
from services.pop3d.app import build
from services.pop3d.mailbox import snapshot
from services.pop3d.server import Pop3Server
from tests.integration.stores import write_previous_layout
from tests.servers import S3Server, free_ports, self_signed

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
MESSAGES = [
    b"From: bob@example.test\nSubject: first\n\nhello\n.leading dot\n",
    b"Subject: second\n\nbody\n",
    b"Subject: third\n\nline 1\nline 2\nline 3\n",
]


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"), "pop.example.test")


def client_tls(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False  # the test certificate has no SAN; the chain is verified
    return context


@dataclass
class Stack:
    settings: Settings
    running: Running
    store: BlobStore
    directory: Directory
    domain: str  # canonical local domain
    alias: str  # another locals domain

    @property
    def server(self) -> Pop3Server:
        return next(c for c in self.running.service.components if isinstance(c, Pop3Server))

    @property
    def port(self) -> int:
        return self.server.ports["pop3"]

    @property
    def tls_port(self) -> int:
        return self.server.ports["pop3s"]

    async def add_account(
        self, name: str, password: str | None = PASSWORD, *, domain: str = "", enabled: bool = True
    ) -> None:
        verifier = await asyncio.to_thread(hash_password, password) if password else None
        record = AccountRecord(
            domain=domain or self.domain, name=name, verifier=verifier, enabled=enabled
        )
        await self.directory.create_account(record)

    async def deliver(self, account: str, content: bytes, seq: int, domain: str = "") -> str:
        qid = new_queue_id(now=1_732_510_000 + seq)
        unique = unique_name(qid, 0, 0, content)
        key = mailbox_key(domain or self.domain, account, "INBOX", "new", unique)
        await self.store.put(key, content)
        return unique

    async def keys(self, account: str, domain: str = "") -> list[str]:
        """Keys under the account, folder included (``INBOX/new/...``)."""
        prefix = mailbox_prefix(domain or self.domain, account).removesuffix("INBOX/")
        return [i.key[len(prefix) :] for i in await self.store.list(prefix)]


@pytest.fixture(params=["file", "s3"])
def settings(
    request: pytest.FixtureRequest,
    nats_url: str,
    tmp_path: Path,
    control_dir: Path,
    unique: str,
    certificate: tuple[Path, Path],
) -> Settings:
    domain = f"mx-{unique}.test"
    (control_dir / "me").write_text(f"{domain}\n")
    (control_dir / "locals").write_text(f"{domain}\nalias-{unique}.test\n")
    (control_dir / "pop3plaintext").write_text("1\n")
    # failed logins of earlier tests on this NATS are forgotten at once: POP3-04's fixed delay
    (control_dir / "authblock").write_text("1\n")
    (control_dir / "tlscert").write_text(str(certificate[0]) + "\n")
    (control_dir / "tlskey").write_text(str(certificate[1]) + "\n")
    common: dict[str, Any] = {
        "nats_url": nats_url,
        "control": control_dir,
        "mail_bucket": f"mail-{unique}",
        "listen_host": "127.0.0.1",
        "http_host": "127.0.0.1",
        "http_port": 0,
        "pop3_port": 0,
        "pop3s_port": 0,
    }
    if request.param == "file":
        return Settings(store=f"file://{tmp_path / 'store'}", **common)
    s3: S3Server = request.getfixturevalue("s3_server")
    return Settings(
        store="s3",
        s3_endpoint=s3.endpoint,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        **common,
    )


async def open_stack(settings: Settings, *, idle_timeout: float = 1200.0) -> AsyncIterator[Stack]:
    running = await start(await build(settings, idle_timeout=idle_timeout), settings)
    conn = next(c for c in running.service.components if isinstance(c, NatsConnection))
    nc = await nats.connect(settings.nats_url)
    try:
        await asyncio.wait_for(conn.ready.wait(), 20)
        directory = await Directory.open(nc.jetstream())
        domain = settings.control.joinpath("me").read_text().strip()
        alias = settings.control.joinpath("locals").read_text().split()[1]
        yield Stack(
            settings, running, open_store(settings, settings.mail_bucket), directory, domain, alias
        )
    finally:
        await nc.close()
        await running.stop()


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async for s in open_stack(settings):
        yield s


class Client:
    """A raw POP3 connection for exact replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    opened: ClassVar[list[Client]] = []  # closed after each test by close_clients

    @classmethod
    async def connect(cls, port: int, tls: ssl.SSLContext | None = None) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        client = cls(reader, writer)
        cls.opened.append(client)
        return client

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 10)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, *lines: str) -> None:
        self.writer.write(b"".join(line.encode() + b"\r\n" for line in lines))
        await self.writer.drain()

    async def cmd(self, line: str) -> bytes:
        await self.send(line)
        return await self.line()

    async def multi(self, line: str) -> list[bytes]:
        first = await self.cmd(line)
        assert first.startswith(b"+OK"), first
        lines = []
        while (got := await self.line()) != b".\r\n":
            assert got, "connection closed inside a multi-line reply"
            lines.append(got)
        return lines

    async def login(self, user: str, password: str = PASSWORD) -> bytes:
        assert await self.cmd(f"USER {user}") == b"+OK \r\n"
        return await self.cmd(f"PASS {password}")

    async def closed(self) -> bool:
        """True when the server closed the connection; our end is closed too."""
        try:
            eof = await asyncio.wait_for(self.reader.read(1), 10) == b""
        except ConnectionResetError:  # closed with our unread bytes in its buffer
            eof = True
        if eof:
            await self.close()
        return eof

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while Client.opened:
        await Client.opened.pop().close()


def pop3(port: int) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", port, timeout=10)


# -- the foundation: USER/PASS, STAT, LIST, UIDL, RETR, DELE, QUIT -----------------------------


async def test_poplib_reads_what_local_delivered_pop3_10_11_13_14_15(stack: Stack) -> None:
    await stack.add_account("alice")
    uniques = [await stack.deliver("alice", m, seq) for seq, m in enumerate(MESSAGES)]

    def session() -> tuple[bytes, tuple[int, int], list[bytes], list[bytes], list[list[bytes]]]:
        p = pop3(stack.port)
        welcome = p.getwelcome()
        p.user("alice")
        p.pass_(PASSWORD)
        stat = p.stat()
        listing = p.list()[1]
        uidl = p.uidl()[1]
        bodies = [p.retr(n)[1] for n in (1, 2, 3)]
        p.quit()
        return welcome, stat, listing, uidl, bodies

    welcome, stat, listing, uidl, bodies = await asyncio.to_thread(session)
    assert welcome == f"+OK {stack.domain} POP3 ready".encode()  # POP3-01
    sizes = [pop3_size(m) for m in MESSAGES]
    assert stat == (3, sum(sizes))
    assert listing == [f"{n} {s}".encode() for n, s in enumerate(sizes, 1)]
    assert uidl == [f"{n} {u}".encode() for n, u in enumerate(uniques, 1)]
    assert bodies == [m.rstrip(b"\n").split(b"\n") for m in MESSAGES]  # poplib unstuffs


async def test_retr_wire_form_is_crlf_and_stuffed_pop3_15(stack: Stack) -> None:
    await stack.add_account("alice")
    await stack.deliver("alice", MESSAGES[0], 0)
    c = await Client.connect(stack.port)
    await c.line()
    assert await c.login("alice") == b"+OK \r\n"
    lines = await c.multi("RETR 1")
    assert b"".join(lines) == (
        b"From: bob@example.test\r\nSubject: first\r\n\r\nhello\r\n..leading dot\r\n"
    )
    assert sum(len(x) for x in lines) - 1 == pop3_size(MESSAGES[0])  # POP3-11: minus the stuffing
    assert await c.multi("TOP 1 1") == [
        b"From: bob@example.test\r\n",
        b"Subject: first\r\n",
        b"\r\n",
        b"hello\r\n",
    ]  # POP3-16
    await c.close()


async def test_quit_removes_deleted_and_moves_the_rest_to_cur_pop3_21(stack: Stack) -> None:
    await stack.add_account("alice")
    uniques = [await stack.deliver("alice", m, seq) for seq, m in enumerate(MESSAGES)]
    c = await Client.connect(stack.port)
    await c.line()
    await c.login("alice")
    assert await c.cmd("DELE 2") == b"+OK \r\n"
    assert (
        await c.cmd("STAT")
        == f"+OK 2 {pop3_size(MESSAGES[0]) + pop3_size(MESSAGES[2])}\r\n".encode()
    )
    assert await c.cmd("QUIT") == b"+OK \r\n"
    assert await c.closed()
    assert sorted(await stack.keys("alice")) == sorted(
        [f"INBOX/cur/{uniques[0]}:2,", f"INBOX/cur/{uniques[2]}:2,"]
    )
    # the next session sees the same UIDLs, renumbered (POP3-14)
    c = await Client.connect(stack.port)
    await c.line()
    await c.login("alice")
    assert await c.multi("UIDL") == [f"1 {uniques[0]}\r\n".encode(), f"2 {uniques[2]}\r\n".encode()]
    assert await c.cmd("QUIT") == b"+OK \r\n"


async def test_no_update_without_quit_pop3_22(stack: Stack) -> None:
    await stack.add_account("alice")
    unique = await stack.deliver("alice", MESSAGES[0], 0)
    c = await Client.connect(stack.port)
    await c.line()
    await c.login("alice")
    assert await c.cmd("DELE 1") == b"+OK \r\n"
    await c.close()
    await asyncio.sleep(0.2)
    assert await stack.keys("alice") == [f"INBOX/new/{unique}"]


async def test_login_through_every_name_of_the_namespace_pop3_05(stack: Stack) -> None:
    await stack.add_account("alice")
    await stack.deliver("alice", MESSAGES[1], 0)
    for login in ("alice", f"Alice@{stack.domain.upper()}", f"alice@{stack.alias}"):
        c = await Client.connect(stack.port)
        await c.line()
        assert await c.login(login) == b"+OK \r\n", login
        assert await c.cmd("STAT") == f"+OK 1 {pop3_size(MESSAGES[1])}\r\n".encode()
        assert await c.cmd("QUIT") == b"+OK \r\n"


async def test_directory_domain_is_its_own_namespace_pop3_05(stack: Stack) -> None:
    hosted = f"hosted-{stack.domain}"
    await stack.directory.create_domain(DomainRecord(name=hosted))
    await stack.add_account("alice", domain=hosted)
    await stack.add_account("alice")
    await stack.deliver("alice", MESSAGES[2], 0, domain=hosted)
    c = await Client.connect(stack.port)
    await c.line()
    assert await c.login(f"alice@{hosted}") == b"+OK \r\n"
    assert await c.cmd("STAT") == f"+OK 1 {pop3_size(MESSAGES[2])}\r\n".encode()
    assert await c.cmd("QUIT") == b"+OK \r\n"
    c = await Client.connect(stack.port)
    await c.line()
    assert await c.login("alice") == b"+OK \r\n"
    assert await c.cmd("STAT") == b"+OK 0 0\r\n"  # POP3-10: no mailbox is an empty one
    await c.close()


async def test_unusable_accounts_fail_like_a_wrong_password_pop3_04_pop3_05(
    stack: Stack,
) -> None:
    await stack.add_account("alice")
    await stack.add_account("disabled", enabled=False)
    await stack.add_account("nopass", password=None)
    c = await Client.connect(stack.port)
    await c.line()
    for user, password in (("alice", "wrong"), ("nobody", PASSWORD)):
        started = time.monotonic()
        assert await c.login(user, password) == b"-ERR [AUTH] authorization failed\r\n"
        assert time.monotonic() - started >= 1.0  # POP3-04 delay
    started = time.monotonic()
    assert await c.login("disabled") == b"-ERR [AUTH] authorization failed\r\n"
    assert time.monotonic() - started >= 1.0
    assert await c.closed()  # the third failure closes (POP3-04)
    c = await Client.connect(stack.port)
    await c.line()
    for user in ("nopass", "root", f"alice@elsewhere-{stack.domain}"):
        assert await c.login(user) == b"-ERR [AUTH] authorization failed\r\n", user
    assert await c.closed()


async def test_size_without_w_is_read_from_the_body_pop3_11(stack: Stack) -> None:
    await stack.add_account("alice")
    content = b"Subject: old\n\nno size in the name\n"
    await stack.store.put(
        mailbox_key(stack.domain, "alice", "INBOX", "cur", "1000000000.old.host:2,S"), content
    )
    c = await Client.connect(stack.port)
    await c.line()
    await c.login("alice")
    assert await c.cmd("LIST 1") == f"+OK 1 {pop3_size(content)}\r\n".encode()
    assert await c.cmd("UIDL 1") == b"+OK 1 1000000000.old.host\r\n"
    assert await c.cmd("QUIT") == b"+OK \r\n"
    assert await stack.keys("alice") == ["INBOX/cur/1000000000.old.host:2,S"]


async def test_interrupted_move_shows_one_message_and_is_finished_pop3_14(stack: Stack) -> None:
    await stack.add_account("alice")
    unique = await stack.deliver("alice", MESSAGES[1], 0)
    await stack.store.put(
        mailbox_key(stack.domain, "alice", "INBOX", "cur", unique + ":2,"), MESSAGES[1]
    )
    c = await Client.connect(stack.port)
    await c.line()
    await c.login("alice")
    assert await c.multi("UIDL") == [f"1 {unique}\r\n".encode()]
    assert await c.cmd("QUIT") == b"+OK \r\n"
    assert await stack.keys("alice") == [f"INBOX/cur/{unique}:2,"]


@pytest.mark.parametrize("settings", ["file"], indirect=True)
async def test_a_mailbox_from_the_previous_store_layout_lists_and_reads_the_same_pop3_11_14(
    stack: Stack,
) -> None:
    """Objects with a ``.meta-*`` sidecar (the directory store before one-file objects)."""
    assert isinstance(stack.store, FileStore)
    await stack.add_account("alice")
    names = []
    for seq, (sub, flags) in enumerate([("new", ""), ("cur", ":2,S"), ("new", "")]):
        content = MESSAGES[seq]
        unique = unique_name(new_queue_id(now=1_732_510_000 + seq), 0, 0, content)
        key = mailbox_key(stack.domain, "alice", "INBOX", sub, unique + flags)
        meta = {"size": str(pop3_size(content)), "delivered": f"{1_732_510_000 + seq:.3f}"}
        write_previous_layout(stack.store, key, content, meta)
        names.append((unique, key, meta))
    c = await Client.connect(stack.port)
    await c.line()
    await c.login("alice")
    assert await c.multi("LIST") == [
        f"{n} {pop3_size(m)}\r\n".encode() for n, m in enumerate(MESSAGES[:3], 1)
    ]
    assert await c.multi("UIDL") == [
        f"{n} {u}\r\n".encode() for n, (u, _, _) in enumerate(names, 1)
    ]
    assert b"".join(await c.multi("RETR 2")) == MESSAGES[1].replace(b"\n", b"\r\n")
    assert await c.cmd("DELE 3") == b"+OK \r\n"
    assert await c.cmd("QUIT") == b"+OK \r\n"
    assert await c.closed()
    assert sorted(await stack.keys("alice")) == sorted(
        [f"INBOX/cur/{names[0][0]}:2,", f"INBOX/cur/{names[1][0]}:2,S"]
    )
    moved = mailbox_key(stack.domain, "alice", "INBOX", "cur", names[0][0] + ":2,")
    assert (await stack.store.stat(moved)).metadata == names[0][2]
    assert await stack.store.get(moved) == MESSAGES[0]
    assert (await stack.store.stat(names[1][1])).metadata == names[1][2]


# -- section 11 beyond the foundation -----------------------------------------------------------


async def test_second_session_is_refused_while_the_lease_is_held_pop3_26(stack: Stack) -> None:
    await stack.add_account("alice")
    first = await Client.connect(stack.port)
    await first.line()
    assert await first.login("alice") == b"+OK \r\n"
    second = await Client.connect(stack.port)
    await second.line()
    assert await second.login("alice") == b"-ERR [IN-USE] mailbox is locked by another session\r\n"
    assert await second.closed()
    assert await first.cmd("QUIT") == b"+OK \r\n"  # releases the lease
    third = await Client.connect(stack.port)
    await third.line()
    assert await third.login("alice") == b"+OK \r\n"
    await third.close()  # a disconnect releases it too (POP3-26)
    for _ in range(50):
        fourth = await Client.connect(stack.port)
        await fourth.line()
        reply = await fourth.login("alice")
        if reply == b"+OK \r\n":
            break
        await asyncio.sleep(0.1)
    assert reply == b"+OK \r\n"
    assert await fourth.cmd("QUIT") == b"+OK \r\n"


async def test_lease_is_renewed_and_lost_when_taken_over_pop3_26(
    nats_url: str, unique: str
) -> None:
    from qmesh.bus.provision import ensure_kv
    from qmesh.contract.errors import Temporary
    from qmesh.directory.authenticate import Account
    from services.pop3d.lease import KvLeases, lease_key
    from services.pop3d.ports import MaildropInUse

    nc = await nats.connect(nats_url)
    try:
        kv = await ensure_kv(nc.jetstream(), "qmesh_leases")
        leases = KvLeases(lambda: kv, ttl=0.4)  # renewed every 0.1 s
        account = Account(f"{unique}.test", "alice")
        lease = await leases.acquire(account)
        with pytest.raises(MaildropInUse):
            await leases.acquire(account)
        first = (await kv.get(lease_key(account))).revision
        await asyncio.sleep(0.35)
        assert (await kv.get(lease_key(account))).revision != first  # renewed
        await lease.confirm()
        await kv.put(lease_key(account), b"someone else")  # taken over behind its back
        with pytest.raises(Temporary):
            await lease.confirm()
        await lease.release()  # does not delete the other holder's key
        assert (await kv.get(lease_key(account))).value == b"someone else"
        await kv.delete(lease_key(account))
        again = await leases.acquire(account)  # a deleted key can be taken again
        await again.release()
    finally:
        await nc.close()


async def test_stls_then_login_pop3_41(stack: Stack, certificate: tuple[Path, Path]) -> None:
    await stack.add_account("alice")
    (stack.settings.control / "pop3plaintext").write_text("0\n")
    await next(c for c in stack.running.service.components if hasattr(c, "reload_now")).reload_now()
    c = await Client.connect(stack.port)
    await c.line()
    assert b"STLS\r\n" in await c.multi("CAPA")
    assert await c.cmd("USER alice") == b"-ERR [AUTH] TLS required\r\n"  # POP3-60
    assert await c.cmd("AUTH PLAIN AGFsaWNlAHg=") == b"-ERR [AUTH] TLS required\r\n"
    await c.send("STLS", "USER alice")  # the pipelined plaintext must be discarded
    assert await c.line() == b"+OK Begin TLS negotiation\r\n"
    await c.writer.start_tls(client_tls(certificate[0]))
    capa = await c.multi("CAPA")  # a reply to USER would arrive here first if it were kept
    assert b"STLS\r\n" not in capa and b"USER\r\n" in capa
    assert await c.cmd("STLS") == b"-ERR TLS already active\r\n"
    assert await c.login("alice") == b"+OK \r\n"
    assert await c.cmd("QUIT") == b"+OK \r\n"


async def test_poplib_stls_and_implicit_tls_pop3_41_pop3_43(
    stack: Stack, certificate: tuple[Path, Path]
) -> None:
    await stack.add_account("alice")
    await stack.deliver("alice", MESSAGES[1], 0)
    context = client_tls(certificate[0])

    def over_stls() -> tuple[int, int]:
        p = pop3(stack.port)
        p.stls(context)
        p.user("alice")
        p.pass_(PASSWORD)
        stat = p.stat()
        p.quit()
        return stat

    def over_pop3s() -> tuple[bytes, tuple[int, int]]:
        p = poplib.POP3_SSL("127.0.0.1", stack.tls_port, timeout=10, context=context)
        welcome = p.getwelcome()
        p.user("alice")
        p.pass_(PASSWORD)
        stat = p.stat()
        p.quit()
        return welcome, stat

    assert await asyncio.to_thread(over_stls) == (1, pop3_size(MESSAGES[1]))
    welcome, stat = await asyncio.to_thread(over_pop3s)
    assert welcome == f"+OK {stack.domain} POP3 ready".encode()
    assert stat == (1, pop3_size(MESSAGES[1]))


async def test_auth_plain_pop3_42(stack: Stack) -> None:
    import base64

    await stack.add_account("alice")
    c = await Client.connect(stack.port)
    await c.line()
    assert await c.cmd("AUTH PLAIN") == b"+ \r\n"
    response = base64.b64encode(f"\0alice@{stack.alias}\0{PASSWORD}".encode()).decode()
    assert await c.cmd(response) == b"+OK \r\n"
    assert await c.cmd("STAT") == b"+OK 0 0\r\n"
    assert await c.cmd("QUIT") == b"+OK \r\n"


async def test_capa_top_last_and_pipelining_pop3_16_20_40_45(stack: Stack) -> None:
    await stack.add_account("alice")
    for seq, message in enumerate(MESSAGES):
        await stack.deliver("alice", message, seq)
    c = await Client.connect(stack.port)
    await c.line()
    await c.send("USER alice", f"PASS {PASSWORD}", "DELE 2", "LAST", "TOP 3 1", "APOP x y")
    replies = [await c.line() for _ in range(4)]
    assert replies == [b"+OK \r\n", b"+OK \r\n", b"+OK \r\n", b"+OK 2\r\n"]
    assert [await c.line() for _ in range(5)] == [
        b"+OK \r\n",
        b"Subject: third\r\n",
        b"\r\n",
        b"line 1\r\n",
        b".\r\n",
    ]
    assert await c.line() == b"-ERR unimplemented\r\n"
    capa = await c.multi("CAPA")
    for cap in (b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"):
        assert cap + b"\r\n" in capa
    assert await c.cmd("QUIT") == b"+OK \r\n"


async def test_line_too_long_pop3_24(stack: Stack) -> None:
    c = await Client.connect(stack.port)
    await c.line()
    assert await c.cmd("NOOP " + "x" * 5000) == b"-ERR line too long\r\n"
    assert await c.cmd("NOOP " + "x" * 250) == b"-ERR line too long\r\n"
    assert await c.cmd("NOOP") == b"+OK \r\n"
    await c.close()


async def test_idle_connection_is_closed_without_update_pop3_25(settings: Settings) -> None:
    async for stack in open_stack(settings, idle_timeout=0.5):
        await stack.add_account("alice")
        unique = await stack.deliver("alice", MESSAGES[0], 0)
        c = await Client.connect(stack.port)
        await c.line()
        await c.login("alice")
        await c.cmd("DELE 1")
        started = time.monotonic()
        assert await c.closed()  # silently: no reply line before the close
        assert time.monotonic() - started < 5
        assert await stack.keys("alice") == [f"INBOX/new/{unique}"]


async def test_stale_tmp_objects_are_removed_at_login_pop3_27(stack: Stack) -> None:
    from qmesh.contract import subjects
    from qmesh.directory.authenticate import Account
    from services.pop3d.lease import KvLeases
    from services.pop3d.mailbox import StoreMaildrops

    conn = next(c for c in stack.running.service.components if isinstance(c, NatsConnection))
    leases = KvLeases(lambda: conn.kv(subjects.KV_LEASES))
    account = Account(stack.domain, "alice")
    staged = mailbox_key(stack.domain, "alice", "INBOX", "tmp", "1732510000.staged.qmesh")
    await stack.store.put(staged, b"half a delivery")

    now = await StoreMaildrops(stack.store, leases).open(account)
    await now.release()
    assert await stack.keys("alice") == ["INBOX/tmp/1732510000.staged.qmesh"]  # still fresh

    later = StoreMaildrops(stack.store, leases, clock=lambda: time.time() + 37 * 3600)
    drop = await later.open(account)
    await drop.release()
    assert await stack.keys("alice") == []


async def test_directory_outage_is_temporary_and_pop3d_stays_ready_pop3_04(
    settings: Settings,
) -> None:
    (dead,) = free_ports(1)
    down = settings.model_copy(update={"nats_url": f"nats://127.0.0.1:{dead}"})
    running = await start(await build(down), down)
    try:
        server = next(c for c in running.service.components if isinstance(c, Pop3Server))
        c = await Client.connect(server.ports["pop3"])
        assert (await c.line()).startswith(b"+OK ")
        assert await c.login("alice") == b"-ERR [SYS/TEMP] temporary authentication failure\r\n"
        assert await c.cmd("NOOP") == b"+OK \r\n"
        await c.close()
        url = f"http://127.0.0.1:{running.http_port}/readyz"
        status = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).status)
        assert status == 200
    finally:
        await running.stop()


async def test_metrics_count_sessions_and_logins(stack: Stack) -> None:
    await stack.add_account("alice")
    c = await Client.connect(stack.port)
    await c.line()
    await c.login("alice")
    await c.cmd("QUIT")
    url = f"http://127.0.0.1:{stack.running.http_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'qmesh_pop3d_logins_total{result="ok"}' in text
    assert 'qmesh_pop3d_sessions_total{listener="pop3"}' in text


# -- PROXY protocol behind a load balancer (SMTPD-86, for pop3d alike) ---------------------

PROXY_V1 = b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 110\r\n"


def proxy_v2(client: str, port: int) -> bytes:
    body = (
        ipaddress.IPv4Address(client).packed
        + ipaddress.IPv4Address("10.0.0.2").packed
        + struct.pack("!HH", port, 995)
    )
    return b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", len(body)) + body


def session_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(r, "remote", "") for r in caplog.records if r.getMessage() == "pop3d.session"]


async def test_proxy_v1_from_a_trusted_balancer_carries_the_client(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    (settings.control / "proxyclients").write_text("127.0.0.0/8\n")
    caplog.set_level("INFO", logger="services.pop3d")
    async for stack in open_stack(settings):
        await stack.add_account("alice")
        c = await Client.connect(stack.port)
        await c.send_raw(PROXY_V1)
        assert await c.line() == f"+OK {stack.domain} POP3 ready\r\n".encode()
        assert await c.login("alice") == b"+OK \r\n"
        assert await c.cmd("QUIT") == b"+OK \r\n"
        assert await c.closed()
    assert session_logs(caplog) == ["203.0.113.7"]


async def test_proxy_v2_before_implicit_tls(
    settings: Settings, certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The header comes before the client's TLS stream; not one byte of the hello is lost."""
    (settings.control / "proxyclients").write_text("127.0.0.1/32\n")
    caplog.set_level("INFO", logger="services.pop3d")
    async for stack in open_stack(settings):
        await stack.add_account("alice")
        await stack.deliver("alice", MESSAGES[0], 0)

        reader, writer = await asyncio.open_connection("127.0.0.1", stack.tls_port)
        c = Client(reader, writer)
        Client.opened.append(c)
        await c.send_raw(proxy_v2("198.51.100.9", 40000))
        await writer.start_tls(client_tls(certificate[0]), server_hostname="127.0.0.1")
        assert (await c.line()).startswith(b"+OK ")
        assert await c.login("alice") == b"+OK \r\n"
        assert await c.cmd("STAT") == f"+OK 1 {pop3_size(MESSAGES[0])}\r\n".encode()
        assert await c.cmd("QUIT") == b"+OK \r\n"
        assert await c.closed()
    assert session_logs(caplog) == ["198.51.100.9"]


async def test_proxy_trusted_peer_without_a_header_is_cut_off(settings: Settings) -> None:
    """A listener that expects PROXY and does not get it closes the connection, no greeting."""
    (settings.control / "proxyclients").write_text("127.0.0.0/8\n")
    async for stack in open_stack(settings):
        c = await Client.connect(stack.port)
        await c.send("USER alice")
        assert await c.closed()


async def test_proxy_header_from_an_untrusted_peer_is_just_a_bad_command(
    settings: Settings,
) -> None:
    """Only balancers in proxyclients may name a client; anyone else gets POP3 as usual."""
    (settings.control / "proxyclients").write_text("10.0.0.0/8\n")
    async for stack in open_stack(settings):
        c = await Client.connect(stack.port)
        assert (await c.line()).startswith(b"+OK ")
        assert (await c.cmd(PROXY_V1.decode().rstrip("\r\n"))).startswith(b"-ERR")
        await c.close()


# -- two replicas on one mailbox store ------------------------------------------------------


async def test_two_replicas_share_the_lease_and_the_uidls_pop3_26_pop3_13(
    settings: Settings,
) -> None:
    """A session on one replica locks the maildrop on the other; a session killed before
    QUIT deletes nothing (POP3-22); both replicas name each message the same (POP3-13)."""
    async for a in open_stack(settings):
        async for b in open_stack(settings):
            await a.add_account("alice")
            for seq, message in enumerate(MESSAGES[:2]):
                await a.deliver("alice", message, seq)

            first = await Client.connect(a.port)
            await first.line()
            assert await first.login("alice") == b"+OK \r\n"
            uidls_a = await first.multi("UIDL")
            assert await first.cmd("DELE 1") == b"+OK \r\n"
            other = await Client.connect(b.port)
            await other.line()
            assert await other.login("alice") == (
                b"-ERR [IN-USE] mailbox is locked by another session\r\n"
            )
            await first.close()  # killed: no QUIT, no update

            for _ in range(50):  # the lease goes with the connection
                second = await Client.connect(b.port)
                await second.line()
                if (reply := await second.login("alice")) == b"+OK \r\n":
                    break
                await second.close()
                await asyncio.sleep(0.1)
            assert reply == b"+OK \r\n"
            assert (await second.cmd("STAT")).startswith(b"+OK 2 ")
            assert await second.multi("UIDL") == uidls_a
            assert await second.cmd("QUIT") == b"+OK \r\n"


class CountingStore:
    """A real store that counts body reads."""

    def __init__(self, store: BlobStore) -> None:
        self.store, self.reads = store, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def get(self, key: str) -> bytes:
        self.reads += 1
        return await self.store.get(key)

    def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        self.reads += 1
        return self.store.stream(key, chunk_size)


async def test_listing_10000_messages_reads_no_body_pop3_11(tmp_path: Path) -> None:
    """RFC 1939 sizes come from the ``,W=`` in the names: a login lists, it never reads."""
    store = CountingStore(FileStore(tmp_path / "store", "qmesh-mail"))
    account = Account("mx.example.test", "alice")
    content = b"Subject: many\n\nbody line\n"
    names = []
    for seq in range(10_000):
        unique = unique_name(new_queue_id(now=1_732_510_000 + seq), 0, 0, content)
        names.append(unique)
        key = mailbox_key(account.domain, account.name, "INBOX", "new", unique)
        await store.store.put(key, content)
    messages = await snapshot(store, account)
    assert store.reads == 0
    assert len(messages) == 10_000
    assert {m.size for m in messages} == {pop3_size(content)}
    assert sorted(m.unique for m in messages) == sorted(names)
