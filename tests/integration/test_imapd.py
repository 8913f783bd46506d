"""imapd on a real nats-server and a real store (the directory store and SeaweedFS S3) (#13).

The service is built by its own ``app.build`` and driven with the standard library's
``imaplib`` (run in a thread) and raw sockets for the hostile input. Messages arrive the way
``local`` writes them: one object under ``INBOX/new/<unique>``.
"""

from __future__ import annotations

import asyncio
import imaplib
import poplib
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
    # failed logins of earlier tests on this NATS are forgotten at once (defences #12)
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


# --- changes: flags, append, copy, move, expunge, folders -------------------------------------


async def test_append_copy_move_expunge(stack: Stack) -> None:
    await stack.add_account("carol")
    await stack.deliver("carol", MESSAGE, 1)
    user = f"carol@{stack.domain}"

    def client() -> None:
        imap = login(stack.port(), user)
        typ, data = imap.append("Drafts", r"(\Draft)", None, b"Subject: draft\r\n\r\nbody\r\n")
        assert typ == "OK" and b"APPENDUID" in data[0], data
        ok(imap.select("INBOX"))
        typ, data = imap._simple_command("UID", "COPY", "1", "Trash")
        assert typ == "OK" and data[0].startswith(b"[COPYUID "), data
        typ, data = imap.uid("MOVE", "1", "Sent")
        assert typ == "OK", data
        assert ok(imap.search(None, "ALL")) == [b""]
        ok(imap.select("Sent"))
        assert ok(imap.fetch("1", "(BODY.PEEK[])"))[0][1] == MESSAGE.replace(b"\n", b"\r\n")
        ok(imap.store("1", "+FLAGS", r"(\Deleted)"))
        ok(imap.expunge())
        assert ok(imap.search(None, "ALL")) == [b""]
        ok(imap.select("Drafts"))
        flags = ok(imap.fetch("1", "(FLAGS)"))[0]
        assert b"\\Draft" in flags
        ok(imap.create("Lists.qmail"))
        assert b"Lists.qmail" in b" ".join(ok(imap.list()))
        ok(imap.rename("Lists.qmail", "Lists.ezmlm"))
        ok(imap.delete("Lists.ezmlm"))
        status = ok(imap.status("Trash", "(MESSAGES UIDNEXT)"))[0]
        assert b"MESSAGES 1" in status and b"UIDNEXT 2" in status
        imap.logout()

    await run(client)
    keys = await stack.keys("carol")
    assert not [k for k in keys if k.startswith(("INBOX/", "Sent/"))], keys
    assert len([k for k in keys if k.startswith("Trash/cur/")]) == 1
    assert len([k for k in keys if k.startswith("Drafts/cur/")]) == 1


async def test_local_folder_is_an_imap_folder(stack: Stack) -> None:
    """A .qmail line ./Maildir/.Lists.qmail/ delivers into the IMAP folder Lists.qmail."""
    await stack.add_account("dave")
    await stack.deliver("dave", MESSAGE, 1, folder="Lists.qmail")

    def client() -> None:
        imap = login(stack.port(), f"dave@{stack.domain}")
        listed = b"\n".join(ok(imap.list()))
        assert b" Lists.qmail" in listed and b" Lists" in listed, listed
        assert ok(imap.select("Lists.qmail")) == [b"1"]
        imap.logout()

    await run(client)


async def test_flags_and_expunge_seen_by_pop3d(stack: Stack) -> None:
    """One mailbox: IMAP's expunge is gone for POP3, POP3's DELE is an expunge for IMAP, and
    pop3d's move to cur/ keeps the IMAP UID and flags."""
    from services.pop3d.app import build as build_pop3d
    from services.pop3d.server import Pop3Server

    settings = stack.settings
    (settings.control / "pop3plaintext").write_text("1\n")
    pop3 = await start(await build_pop3d(settings), settings)
    await stack.add_account("erin")
    for i in range(3):
        await stack.deliver("erin", MESSAGE.replace(b"first", b"m%d" % i), i)
    pop_port = next(c for c in pop3.service.components if isinstance(c, Pop3Server)).ports["pop3"]
    user = f"erin@{stack.domain}"

    def flow() -> None:
        imap = login(stack.port(), user)
        ok(imap.select("INBOX"))
        assert uids(imap) == [1, 2, 3]
        ok(imap.uid("STORE", "1", "+FLAGS", r"(\Seen \Flagged)"))
        ok(imap.uid("STORE", "2", "+FLAGS", r"(\Deleted)"))
        ok(imap.expunge())
        imap.logout()
        pop = poplib.POP3("127.0.0.1", pop_port, timeout=20)
        pop.user(user)
        pop.pass_(PASSWORD)
        count, _ = pop.stat()
        assert count == 2  # the expunged message is gone for POP3
        subjects = [b"\n".join(pop.top(n, 0)[1]) for n in (1, 2)]
        assert b"Subject: m0" in subjects[0] and b"Subject: m2" in subjects[1]
        pop.dele(2)
        pop.quit()  # moves message 1 to cur/ and deletes message 2
        imap = login(stack.port(), user)
        ok(imap.select("INBOX"))
        assert uids(imap) == [1]  # same UID after pop3d's move; DELE expunged UID 3
        flags = ok(imap.uid("FETCH", "1", "(FLAGS)"))[0]
        assert b"\\Seen" in flags and b"\\Flagged" in flags
        imap.logout()

    try:
        await run(flow)
    finally:
        await pop3.stop()


async def test_idle_sees_the_expunge_of_a_pop3_quit(stack: Stack) -> None:
    """POP3-21 and #13: a DELE is an IMAP expunge. pop3d's QUIT drops the message from the
    index and announces the account, so an IDLE session hears EXPUNGE within a second, with
    no listing of its own; the UIDLs pop3d gives stay the unique names (POP3-14)."""
    from services.pop3d.app import build as build_pop3d
    from services.pop3d.server import Pop3Server

    settings = stack.settings
    (settings.control / "pop3plaintext").write_text("1\n")
    pop3 = await start(await build_pop3d(settings), settings)
    conn = next(c for c in pop3.service.components if isinstance(c, NatsConnection))
    await asyncio.wait_for(conn.ready.wait(), 20)
    await stack.add_account("hugo")
    names = [
        await stack.deliver("hugo", MESSAGE.replace(b"first", b"h%d" % i), i) for i in range(3)
    ]
    pop_port = next(c for c in pop3.service.components if isinstance(c, Pop3Server)).ports["pop3"]
    user = f"hugo@{stack.domain}"
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port())

    async def line() -> bytes:
        return await asyncio.wait_for(reader.readline(), 10)

    async def command(text: str) -> list[bytes]:
        tag = text.split()[0].encode()
        writer.write(text.encode() + b"\r\n")
        got: list[bytes] = []
        while not (got and got[-1].startswith(tag + b" ")):
            got.append(await line())
        return got

    def pop_delete_second() -> list[bytes]:
        pop = poplib.POP3("127.0.0.1", pop_port, timeout=20)
        pop.user(user)
        pop.pass_(PASSWORD)
        listed = pop.uidl()[1]
        pop.dele(2)
        pop.quit()
        return listed

    try:
        await line()
        assert (await command(f'a1 LOGIN "{user}" "{PASSWORD}"'))[-1].startswith(b"a1 OK")
        assert b"* 3 EXISTS\r\n" in await command("a2 SELECT INBOX")
        writer.write(b"a3 IDLE\r\n")
        assert (await line()).startswith(b"+ ")
        loop = asyncio.get_running_loop()
        listed = await run(pop_delete_second)
        quit_at = loop.time()
        assert listed == [b"%d %s" % (n + 1, u.encode()) for n, u in enumerate(names)]
        got = await line()
        waited = loop.time() - quit_at
        assert got == b"* 2 EXPUNGE\r\n", got
        assert waited < 1.0, waited
        writer.write(b"DONE\r\n")
        rest: list[bytes] = []
        while not (rest and rest[-1].startswith(b"a3 ")):
            rest.append(await line())
        assert rest[-1].startswith(b"a3 OK")
        fetched = await command("a4 UID FETCH 1:* (FLAGS)")
        assert [x.split(b" ")[1] for x in fetched[:-1]] == [b"1", b"2"]
        assert b"UID 3" in fetched[1] and b"UID 2" not in b"".join(fetched)
        assert sorted(await stack.keys("hugo")) == sorted(
            f"INBOX/cur/{u}:2," for u in (names[0], names[2])
        )
    finally:
        writer.close()
        await pop3.stop()


async def test_a_selected_session_reads_a_message_pop3d_moved_to_cur(stack: Stack) -> None:
    """POP3-21 moves a kept message from new/ to cur/ and pop3d announces it (#13): a session
    that had the folder selected lists it again at its next command and reads the message at
    its new key instead of finding nothing at the old one."""
    from services.pop3d.app import build as build_pop3d
    from services.pop3d.server import Pop3Server

    settings = stack.settings
    (settings.control / "pop3plaintext").write_text("1\n")
    pop3 = await start(await build_pop3d(settings), settings)
    conn = next(c for c in pop3.service.components if isinstance(c, NatsConnection))
    await asyncio.wait_for(conn.ready.wait(), 20)
    pop_port = next(c for c in pop3.service.components if isinstance(c, Pop3Server)).ports["pop3"]
    await stack.add_account("jane")
    await stack.deliver("jane", MESSAGE.replace(b"first", b"kept"), 0)
    user = f"jane@{stack.domain}"
    imap = await run(lambda: login(stack.port(), user))

    def pop_keep_all() -> None:
        pop = poplib.POP3("127.0.0.1", pop_port, timeout=20)
        pop.user(user)
        pop.pass_(PASSWORD)
        pop.quit()

    def subject() -> bytes:
        data = ok(imap.uid("FETCH", "1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        return bytes(data[0][1])

    try:
        await run(lambda: ok(imap.select("INBOX")))
        assert b"Subject: kept" in await run(subject)
        await run(pop_keep_all)
        await asyncio.sleep(0.3)  # the announcement's way through NATS
        assert b"Subject: kept" in await run(subject)
        assert [k.split("/")[1] for k in await stack.keys("jane")] == ["cur"]
        await run(imap.logout)
    finally:
        await pop3.stop()


# --- replicas and IDLE ------------------------------------------------------------------------


async def test_uids_agree_across_two_replicas(two: Stack) -> None:
    await two.add_account("fred")
    for i in range(5):
        await two.deliver("fred", MESSAGE, i)
    user = f"fred@{two.domain}"

    def both() -> None:
        a, b = login(two.port(0), user), login(two.port(1), user)
        ok(a.select("INBOX"))
        ok(b.select("INBOX"))
        validity = [x.untagged_responses["UIDVALIDITY"] for x in (a, b)]
        assert validity[0] == validity[1]
        assert uids(a) == uids(b) == [1, 2, 3, 4, 5]
        ok(a.uid("STORE", "3", "+FLAGS", r"(\Answered)"))
        ok(b.noop())
        assert b"\\Answered" in ok(b.uid("FETCH", "3", "(FLAGS)"))[0]
        a.logout()
        b.logout()

    await run(both)
    await two.deliver("fred", MESSAGE, 9)

    def after() -> None:
        b = login(two.port(1), user)
        ok(b.select("INBOX"))
        assert uids(b) == [1, 2, 3, 4, 5, 6]
        b.logout()

    await run(after)


async def test_idle_hears_a_delivery_on_another_replica(two: Stack) -> None:
    """IDLE on replica 0; the delivery is announced the way local announces it (one publish
    on qmesh.mailbox.<account-key>), and the client hears EXISTS within a second."""
    await two.add_account("gina")
    user = f"gina@{two.domain}"
    reader, writer = await asyncio.open_connection("127.0.0.1", two.port(0))

    async def line() -> bytes:
        return await asyncio.wait_for(reader.readline(), 10)

    async def command(text: str) -> list[bytes]:
        tag = text.split()[0].encode()
        writer.write(text.encode() + b"\r\n")
        got: list[bytes] = []
        while not (got and got[-1].startswith(tag + b" ")):
            got.append(await line())
        return got

    try:
        await line()
        assert (await command(f'a1 LOGIN "{user}" "{PASSWORD}"'))[-1].startswith(b"a1 OK")
        assert b"* 0 EXISTS\r\n" in await command("a2 SELECT INBOX")
        writer.write(b"a3 IDLE\r\n")
        assert (await line()).startswith(b"+ ")
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await two.deliver("gina", MESSAGE, 1, announce=True)
        got = await line()
        waited = loop.time() - sent
        assert got == b"* 1 EXISTS\r\n", got
        assert waited < 1.0, waited
        writer.write(b"DONE\r\n")
        rest: list[bytes] = []
        while not (rest and rest[-1].startswith(b"a3 ")):
            rest.append(await line())
        assert rest[-1].startswith(b"a3 OK")
    finally:
        writer.close()


# --- hostile input ----------------------------------------------------------------------------


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**22)
        raw = cls(reader, writer)
        await raw.line()
        return raw

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 10)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until(self, tag: bytes) -> list[bytes]:
        got: list[bytes] = []
        while not (got and got[-1].startswith(tag + b" ")):
            got.append(await self.line())
            assert got[-1], got
        return got

    def close(self) -> None:
        self.writer.close()


async def test_hostile_input_is_bad_or_no_and_the_service_keeps_serving(stack: Stack) -> None:
    await stack.add_account("mallory")
    await stack.add_account("victim")
    await stack.deliver("victim", MESSAGE, 1)
    raw = await Raw.connect(stack.port())
    try:
        await raw.send(b"t1 LOGIN {4294967296}\r\n")  # 4 GB literal, synchronising
        assert (await raw.until(b"t1"))[-1].startswith(b"t1 BAD")
        await raw.send(b"t2 NOOP " + b"x" * (1024 * 1024) + b"\r\n")  # a 1 MB line
        assert (await raw.until(b"t2"))[-1].startswith(b"t2 BAD")
        await raw.send(f't3 LOGIN "mallory@{stack.domain}" "{PASSWORD}"\r\n'.encode())
        assert (await raw.until(b"t3"))[-1].startswith(b"t3 OK")
        await raw.send(b"t4 FETCH 1:* (FLAGS (BODY[]\r\n")  # unbalanced parentheses
        assert (await raw.until(b"t4"))[-1].startswith(b"t4 BAD")
        for n, name in enumerate(
            [b'"a..b"', b'"a/b"', b'"..victim"', b"{3}\r\na\x00b", b'"%"', b'"&Jjo"', b'".."'], 5
        ):
            tag = b"t%d" % n
            if name.startswith(b"{"):
                head, _, rest = name.partition(b"\r\n")
                await raw.send(tag + b" CREATE " + head + b"\r\n")
                cont = await raw.line()
                assert cont.startswith(b"+"), cont
                await raw.send(rest + b"\r\n")
            else:
                await raw.send(tag + b" CREATE " + name + b"\r\n")
            answer = (await raw.until(tag))[-1]
            assert answer.startswith((tag + b" NO", tag + b" BAD")), (name, answer)
        await raw.send(b'u1 SELECT "../victim/INBOX"\r\n')
        assert (await raw.until(b"u1"))[-1].startswith(b"u1 NO")
        await raw.send(b"u2 SELECT INBOX\r\n")
        assert b"* 0 EXISTS\r\n" in await raw.until(b"u2")  # only mallory's own mail
        await raw.send(b"u3 APPEND INBOX {4294967296+}\r\n")  # LITERAL+ 4 GB: refused, closed
        got = await raw.until(b"u3")
        assert got[-1].startswith(b"u3 BAD") or got[-1].startswith(b"* BYE")
    finally:
        raw.close()

    def still_serving() -> None:
        imap = login(stack.port(), f"victim@{stack.domain}")
        assert ok(imap.select("INBOX")) == [b"1"]
        imap.logout()

    await run(still_serving)


async def test_no_password_in_the_clear_from_a_remote_client(stack: Stack) -> None:
    """Behind a trusted balancer (PROXY header), a client from a public address sees
    LOGINDISABLED and no AUTH=PLAIN before STARTTLS, and LOGIN is refused."""
    (stack.settings.control / "proxyclients").write_text("127.0.0.1\n")
    await stack.add_account("henry")
    for _ in range(50):  # the control watcher picks the new file up
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port())
        writer.write(b"PROXY TCP4 203.0.113.5 127.0.0.1 40000 143\r\n")
        greeting = await asyncio.wait_for(reader.readline(), 10)
        if b"LOGINDISABLED" in greeting:
            break
        writer.close()
        await asyncio.sleep(0.2)
    try:
        assert b"LOGINDISABLED" in greeting and b"AUTH=PLAIN" not in greeting, greeting
        assert b"STARTTLS" in greeting
        writer.write(f'x1 LOGIN "henry@{stack.domain}" "{PASSWORD}"\r\n'.encode())
        answer = await asyncio.wait_for(reader.readline(), 10)
        assert answer.startswith((b"x1 NO", b"x1 BAD")), answer
    finally:
        writer.close()


async def test_other_folders_leave_the_selected_one_alone(stack: Stack) -> None:
    """STATUS or APPEND on another folder while INBOX is selected (what Thunderbird does all
    the time) reports nothing about INBOX: folders made in the same second share a
    UIDVALIDITY, and pymap tells folders apart by their MAILBOXID."""
    await stack.add_account("tess")
    for seq in (1, 2):
        await stack.deliver("tess", MESSAGE, seq)
    raw = await Raw.connect(stack.port())
    try:
        await raw.send(f'l LOGIN "tess@{stack.domain}" "{PASSWORD}"\r\n'.encode())
        assert (await raw.until(b"l"))[-1].startswith(b"l OK")
        await raw.send(b"s SELECT INBOX\r\n")
        assert b"* 2 EXISTS\r\n" in await raw.until(b"s")
        ids = set()
        for n, folder in enumerate((b"INBOX", b"Trash", b"Sent", b"Junk", b"Drafts")):
            await raw.send(b"i%d STATUS %b (MAILBOXID MESSAGES)\r\n" % (n, folder))
            got = await raw.until(b"i%d" % n)
            assert len(got) == 2, got  # the STATUS line and OK: no EXPUNGE, EXISTS or FETCH
            ids.add(got[0].split(b"MAILBOXID ")[1].split(b")")[0])
        assert len(ids) == 5
        await raw.send(b"a APPEND Sent {%d+}\r\n%b\r\n" % (len(MESSAGE), MESSAGE))
        assert len(await raw.until(b"a")) == 1
        await raw.send(b"n NOOP\r\n")
        assert await raw.until(b"n") == [b"n OK NOOP completed.\r\n"]
    finally:
        raw.close()


async def test_a_name_not_in_modified_utf7_is_no_as_in_dovecot(stack: Stack) -> None:
    """Raw UTF-8 (isync 1.4 sends a local folder ``Bücher`` so) or a broken ``&`` run in a
    mailbox argument: a tagged NO with Dovecot's words, never BAD (mbsync abandons its whole
    run on BAD), and the session goes on."""
    await stack.add_account("uwe")
    raw = await Raw.connect(stack.port())
    try:
        await raw.send(f'l LOGIN "uwe@{stack.domain}" "{PASSWORD}"\r\n'.encode())
        assert (await raw.until(b"l"))[-1].startswith(b"l OK")
        commands = [
            b'CREATE "B\xc3\xbccher"',
            b"CREATE &Jjo",
            b'SELECT "B\xc3\xbccher"',
            b'STATUS "B\xc3\xbccher" (MESSAGES)',
            b'RENAME INBOX "B\xc3\xbccher"',
            b'SUBSCRIBE "B\xc3\xbccher"',
            b'APPEND "B\xc3\xbccher" {1+}\r\nx',
        ]
        for n, command in enumerate(commands):
            await raw.send(b"c%d %b\r\n" % (n, command))
            answer = (await raw.until(b"c%d" % n))[-1]
            assert answer.startswith(b"c%d NO" % n), (command, answer)
            if command.startswith(b"CREATE"):
                assert b"Mailbox name is not valid mUTF-7" in answer, answer
        await raw.send(b'd LIST "" *\r\n')
        listed = await raw.until(b"d")
        assert listed[-1].startswith(b"d OK") and not any(b"\x00" in x for x in listed)
        await raw.send(b"e CREATE Entw&APw-rfe\r\n")  # valid modified UTF-7 still works
        assert (await raw.until(b"e"))[-1].startswith(b"e OK")
    finally:
        raw.close()
