"""imapd on a real nats-server and a real store (the directory store and SeaweedFS S3) (#13).

The service is built by its own ``app.build`` and driven with the standard library's
``imaplib`` (run in a thread) and raw sockets for the hostile input. Messages arrive the way
``local`` writes them: one object under ``INBOX/new/<unique>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import poplib
import re
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.contract.ids import new_queue_id
from qmesh.directory.passwords import hash_password
from qmesh.directory.records import AccountRecord
from qmesh.directory.store import Directory
from qmesh.mailbox.names import announce_subject
from qmesh.runtime.service import Running, start
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobStore
from qmesh.store.factory import open_store
from qmesh.store.keys import mailbox_key
from qmesh.store.maildir import unique_name
from services.imapd.app import build
from services.imapd.server import ImapServer
from tests.servers import S3Server, self_signed

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
T = TypeVar("T")
MESSAGE = (
    b"From: Bob <bob@example.test>\nTo: alice@example.test\nSubject: first\n"
    b"Date: Mon, 1 Dec 2025 10:00:00 +0000\nMessage-ID: <1@example.test>\n\nhello\nworld\n"
)
MULTIPART = (
    b"From: carol@example.test\nSubject: parts\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
    b"the text\n--b\nContent-Type: application/octet-stream\n\nAAAA\n--b--\n"
)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"), "imap.example.test")


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
    (control_dir / "locals").write_text(f"{domain}\n")
    (control_dir / "tlscert").write_text(str(certificate[0]) + "\n")
    (control_dir / "tlskey").write_text(str(certificate[1]) + "\n")
    common: dict[str, Any] = {
        "nats_url": nats_url,
        "control": control_dir,
        "mail_bucket": f"mail-{unique}",
        "listen_host": "127.0.0.1",
        "http_host": "127.0.0.1",
        "http_port": 0,
        "imap_port": 0,
        "imaps_port": 0,
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


@dataclass
class Stack:
    settings: Settings
    running: list[Running]
    store: BlobStore
    directory: Directory
    domain: str
    nc: Any

    def port(self, replica: int = 0, listener: str = "imap") -> int:
        server = next(
            c for c in self.running[replica].service.components if isinstance(c, ImapServer)
        )
        return server.ports[listener]

    async def add_account(self, name: str, password: str = PASSWORD) -> None:
        verifier = await asyncio.to_thread(hash_password, password)
        await self.directory.create_account(
            AccountRecord(domain=self.domain, name=name, verifier=verifier, enabled=True)
        )

    async def deliver(
        self,
        account: str,
        content: bytes,
        seq: int,
        *,
        folder: str = "INBOX",
        announce: bool = False,
    ) -> str:
        """What local does: one object under new/, then (since #13) one announcement."""
        qid = new_queue_id(now=1_732_510_000 + seq)
        unique = unique_name(qid, 0, 0, content)
        await self.store.put(mailbox_key(self.domain, account, folder, "new", unique), content)
        if announce:
            await self.nc.publish(announce_subject(self.domain, account), b"")
            await self.nc.flush()
        return unique

    async def keys(self, account: str) -> list[str]:
        prefix = f"{self.domain}/{account}/"
        return [i.key[len(prefix) :] for i in await self.store.list(prefix)]


async def open_stack(settings: Settings, replicas: int = 1) -> AsyncIterator[Stack]:
    running = [await start(await build(settings), settings) for _ in range(replicas)]
    nc = await nats.connect(settings.nats_url)
    try:
        for r in running:
            conn = next(c for c in r.service.components if isinstance(c, NatsConnection))
            await asyncio.wait_for(conn.ready.wait(), 20)
        directory = await Directory.open(nc.jetstream())
        domain = settings.control.joinpath("me").read_text().strip()
        yield Stack(
            settings, running, open_store(settings, settings.mail_bucket), directory, domain, nc
        )
    finally:
        await nc.close()
        for r in running:
            await r.stop()


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async for s in open_stack(settings):
        yield s


@pytest.fixture
async def two(settings: Settings) -> AsyncIterator[Stack]:
    async for s in open_stack(settings, replicas=2):
        yield s


async def run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def login(port: int, user: str, password: str = PASSWORD) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    imap.login(user, password)
    return imap


def ok(result: tuple[str, list[Any]]) -> list[Any]:
    typ, data = result
    assert typ == "OK", (typ, data)
    return data


def uids(imap: imaplib.IMAP4) -> list[int]:
    data = ok(imap.uid("SEARCH", "ALL"))
    return [int(x) for x in data[0].split()]


# --- login and capabilities -----------------------------------------------------------------


async def test_greeting_and_capabilities_before_login(stack: Stack) -> None:
    imap = await run(lambda: imaplib.IMAP4("127.0.0.1", stack.port(), timeout=20))
    try:
        caps = set(imap.capabilities)
        assert {"IMAP4REV1", "STARTTLS", "LITERAL+", "ID"} <= caps
        assert "AUTH=PLAIN" in caps  # loopback: plaintext allowed, as pymap and pop3d do
    finally:
        await run(imap.logout)


async def test_login_list_select_fetch(stack: Stack) -> None:
    await stack.add_account("alice")
    await stack.deliver("alice", MESSAGE, 1)
    await stack.deliver("alice", MULTIPART, 2)

    def client() -> None:
        imap = login(stack.port(), f"alice@{stack.domain}")
        caps = ok(imap.capability())[0].decode()
        assert "IDLE" in caps and "UIDPLUS" in caps and "MOVE" in caps
        listed = b"\n".join(ok(imap.list()))
        for name in (b" INBOX", b" Sent", b" Drafts", b" Trash", b" Junk"):
            assert name in listed, listed
        data = ok(imap.select("INBOX"))
        assert data == [b"2"]
        assert imap.untagged_responses.get("UIDVALIDITY")
        flags = ok(imap.fetch("1:*", "(UID FLAGS RFC822.SIZE)"))
        assert b"UID 1" in flags[0] and b"UID 2" in flags[1]
        assert b"RFC822.SIZE %d" % (len(MESSAGE) + MESSAGE.count(b"\n")) in flags[0]
        body = ok(imap.fetch("1", "(BODY.PEEK[])"))
        assert body[0][1] == MESSAGE.replace(b"\n", b"\r\n")
        part = ok(imap.fetch("1", "(BODY.PEEK[]<0.10>)"))
        assert part[0][1] == MESSAGE.replace(b"\n", b"\r\n")[:10]
        structure = ok(imap.fetch("2", "(BODYSTRUCTURE)"))[0]
        assert b'("TEXT" "PLAIN"' in structure.upper() and b'"MIXED"' in structure.upper()
        text = ok(imap.fetch("2", "(BODY.PEEK[1])"))
        # pymap keeps the CRLF before the boundary in the part (Dovecot drops it)
        assert text[0][1].rstrip(b"\r\n") == b"the text"
        header = ok(imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        assert header[0][1].strip() == b"Subject: first"
        found = ok(imap.search(None, 'HEADER Subject "parts"'))
        assert found == [b"2"]
        assert ok(imap.search(None, "BODY", "hello")) == [b"1"]
        assert ok(imap.search(None, "UNSEEN")) == [b"1 2"]
        imap.logout()

    await run(client)


async def test_wrong_password_is_no(stack: Stack) -> None:
    await stack.add_account("bob")

    def client() -> None:
        imap = imaplib.IMAP4("127.0.0.1", stack.port(), timeout=20)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(f"bob@{stack.domain}", "wrong")
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(f"nobody@{stack.domain}", PASSWORD)
        imap.login(f"bob@{stack.domain}", PASSWORD)
        imap.logout()

    await run(client)


async def test_implicit_tls_and_starttls(stack: Stack, certificate: tuple[Path, Path]) -> None:
    await stack.add_account("tls")
    context = ssl.create_default_context(cafile=str(certificate[0]))
    context.check_hostname = False

    def client() -> None:
        first = imaplib.IMAP4("127.0.0.1", stack.port(), timeout=20)
        first.logout()
        imap = imaplib.IMAP4_SSL("127.0.0.1", stack.port(0, "imaps"), ssl_context=context)
        imap.login(f"tls@{stack.domain}", PASSWORD)
        ok(imap.select("INBOX"))
        imap.logout()
        plain = imaplib.IMAP4("127.0.0.1", stack.port(), timeout=20)
        ok(plain.starttls(context))
        plain.login(f"tls@{stack.domain}", PASSWORD)
        plain.logout()

    await run(client)
