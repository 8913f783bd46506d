"""webmail's pages over real HTTP against the running service, real nats-server and SeaweedFS
(issue 14).

Messages arrive as ``local`` delivers them (one object under ``new/``); what is checked is what
a browser or an attacker sees (status codes, pages, headers, downloads) and what the shared
mailbox model, the todo stream and the queue bucket hold afterwards. Each test has its own
nats-server: the failed-login counts are per client address, and every client is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from qmesh.bus.connection import NatsConnection
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.contract.events import Todo
from qmesh.contract.ids import new_queue_id
from qmesh.directory.authenticate import DirectoryAuthenticator
from qmesh.directory.namespaces import Namespaces
from qmesh.directory.passwords import hash_password
from qmesh.directory.records import AccountRecord
from qmesh.directory.store import Directory
from qmesh.mailbox.index import FolderIndex
from qmesh.mailbox.sync import AccountMailbox
from qmesh.mailbox.versioned import NatsVersioned
from qmesh.runtime.service import Running, start
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobStore
from qmesh.store.factory import open_store
from qmesh.store.keys import body_key, mailbox_key
from qmesh.store.maildir import unique_name
from services.webmail.app import build
from tests.servers import S3Server

pytestmark = pytest.mark.integration

PASSWORD = "alice's long secret"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
EVENT_ATTRIBUTE = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)


@dataclass
class Site:
    settings: Settings
    running: Running
    directory: Directory
    mail: BlobStore
    queue: BlobStore
    domain: str
    nc: Any
    url: str

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)

    async def add_account(self, name: str, password: str = PASSWORD) -> str:
        verifier = await asyncio.to_thread(hash_password, password)
        await self.directory.create_account(
            AccountRecord(domain=self.domain, name=name, verifier=verifier, enabled=True)
        )
        return f"{name}@{self.domain}"

    async def deliver(self, account: str, content: bytes, seq: int, folder: str = "INBOX") -> None:
        """What local does: one object under new/."""
        qid = new_queue_id(now=1_732_510_000 + seq)
        unique = unique_name(qid, 0, 0, content)
        await self.mail.put(mailbox_key(self.domain, account, folder, "new", unique), content)

    def box(self, account: str) -> AccountMailbox:
        kv = self.nc.jetstream()
        return AccountMailbox(self.mail, _Lazy(kv), self.domain, account)

    async def index(self, account: str, folder: str = "INBOX") -> FolderIndex:
        return await self.box(account).sync(folder)

    async def todos(self) -> list[Todo]:
        """The todo events waiting in the stream (no send runs here to take them)."""
        js = self.nc.jetstream()
        state = (await js.stream_info(subjects.STREAM_TODO)).state
        if not state.messages:
            return []
        found: list[Todo] = []
        for seq in range(state.first_seq, state.last_seq + 1):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                found.append(Todo.decode((await js.get_msg(subjects.STREAM_TODO, seq)).data))
        return found


class _Lazy:
    """NatsVersioned on the test's own connection, opened on first use."""

    def __init__(self, js: Any) -> None:
        self._js = js
        self._inner: NatsVersioned | None = None

    async def _get(self) -> NatsVersioned:
        if self._inner is None:
            self._inner = NatsVersioned(await self._js.key_value(subjects.KV_MAILBOX))
        return self._inner

    async def read(self, key: str) -> tuple[bytes, int] | None:
        return await (await self._get()).read(key)

    async def create(self, key: str, value: bytes) -> int:
        return await (await self._get()).create(key, value)

    async def replace(self, key: str, value: bytes, revision: int) -> int:
        return await (await self._get()).replace(key, value, revision)

    async def remove(self, key: str) -> None:
        await (await self._get()).remove(key)


@pytest.fixture
async def site(
    private_nats: NatsServer, s3_server: S3Server, control_dir: Path, unique: str
) -> AsyncIterator[Site]:
    domain = f"mx-{unique}.test"
    (control_dir / "me").write_text(f"{domain}\n")
    (control_dir / "locals").write_text(f"{domain}\n")
    (control_dir / "authfailures").write_text("4\n")
    (control_dir / "authdelay").write_text("10\n")
    (control_dir / "databytes").write_text("200000\n")
    settings = Settings(
        nats_url=private_nats.url,
        control=control_dir,
        http_host="127.0.0.1",
        http_port=0,
        store="s3",
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        mail_bucket=f"m-{unique}",
        queue_bucket=f"q-{unique}",
    )
    nc = await nats.connect(private_nats.url)
    directory = await Directory.open(nc.jetstream())
    running = await start(await build(settings), settings)
    conn = next(c for c in running.service.components if isinstance(c, NatsConnection))
    try:
        await asyncio.wait_for(conn.ready.wait(), 20)
        yield Site(
            settings,
            running,
            directory,
            open_store(settings, settings.mail_bucket),
            open_store(settings, settings.queue_bucket),
            domain,
            nc,
            f"http://127.0.0.1:{running.http_port}",
        )
    finally:
        await running.stop()
        await nc.close()


def message(subject: str, body: str = "hello\n", sender: str = "bob@example.test") -> bytes:
    return (
        f"From: {sender}\nTo: alice\nSubject: {subject}\n"
        f"Date: Mon, 25 Nov 2024 10:00:00 +0000\nMessage-ID: <{abs(hash(subject))}@example.test>\n"
        f"\n{body}"
    ).encode()


HOSTILE = b"""From: Mallory <mallory@example.test>
To: alice
Subject: =?utf-8?q?<script>alert(1)</script>?=
Date: Mon, 25 Nov 2024 10:00:00 +0000
Message-ID: <hostile@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/html; charset=utf-8

<p onclick="steal()">Hi <b>there</b></p><script>document.title='pwned'</script>
<img src="https://tracker.example.test/pixel.gif" onerror="alert(2)">
<a href="https://example.test/x">link</a> <a href="javascript:alert(3)">js</a>
<form action="https://evil.example.test/"><input name="password"></form>
<iframe src="https://evil.example.test/"></iframe>
--b1
Content-Type: text/html; name="<script>alert(4)</script>.html"
Content-Disposition: attachment; filename="../../<img src=x onerror=alert(5)>.html"

<script>alert(6)</script>
--b1--
"""


async def login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    token = CSRF_RE.search(page.text)
    assert token is not None
    return await client.post(
        "/login", data={"csrf": token.group(1), "login": name, "password": password}
    )


async def csrf(client: httpx.AsyncClient, path: str = "/mail") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    token = CSRF_RE.search(page.text)
    assert token is not None
    return token.group(1)


async def test_pages_health_and_headers_share_one_port(site: Site) -> None:
    async with site.client() as client:
        assert (await client.get("/healthz")).json()["service"] == "webmail"
        assert (await client.get("/readyz")).status_code == 200
        assert "qmesh_webmail_logins_total" in (await client.get("/metrics")).text
        page = await client.get("/mail")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        page = await client.get("/login")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and page.headers["x-frame-options"] == "DENY"
        assert "<script>" not in page.text


async def test_login_read_mark_read_and_logout(site: Site) -> None:
    alice = await site.add_account("alice")
    await site.deliver("alice", message("Lunch on Friday?", "Shall we?\n"), 1)
    async with site.client() as client:
        reply = await login(client, alice, PASSWORD)
        assert reply.status_code == 303, reply.text
        cookie = reply.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        page = await client.get("/mail?f=INBOX")
        assert "Lunch on Friday?" in page.text and 'class="unread"' in page.text
        (uid,) = [e.uid for e in (await site.index("alice")).entries.values()]
        assert "\\Seen" not in next(iter((await site.index("alice")).entries.values())).flags
        page = await client.get(f"/read?f=INBOX&uid={uid}")
        assert page.status_code == 200 and "Shall we?" in page.text
        # read on open, in the shared model imapd and pop3d see (#13)
        assert "\\Seen" in next(iter((await site.index("alice")).entries.values())).flags
        token = await csrf(client)
        session = client.cookies["qmesh_webmail"]
        reply = await client.post("/logout", data={"csrf": token})
        assert reply.status_code == 303
        assert (await client.get("/mail")).status_code == 303
    async with site.client() as replay:  # the old cookie is worth nothing after logout
        replay.cookies.set("qmesh_webmail", session)
        assert (await replay.get("/mail")).status_code == 303


async def test_unknown_account_and_wrong_password_answer_alike(site: Site) -> None:
    alice = await site.add_account("alice")
    async with site.client() as client:
        wrong = await login(client, alice, "not the password")
        unknown = await login(client, f"nobody@{site.domain}", "not the password")
        other = await login(client, "alice@elsewhere.test", "x")
    assert wrong.status_code == unknown.status_code == other.status_code == 401
    strip = re.compile(r'name="csrf" value="[^"]+"')
    assert strip.sub("", wrong.text) == strip.sub("", unknown.text) == strip.sub("", other.text)


async def test_brute_force_logins_are_throttled(site: Site) -> None:
    """authfailures=4: from the fifth attempt on the client is refused, even with the right
    password, and nothing tells whether the account exists."""
    alice = await site.add_account("alice")
    async with site.client() as client:
        codes = [(await login(client, alice, f"guess {n}")).status_code for n in range(4)]
        assert codes == [401] * 4
        blocked = await login(client, alice, PASSWORD)
        assert blocked.status_code == 429 and "Too many failed logins" in blocked.text
        assert "set-cookie" not in blocked.headers or "qmesh_webmail=" not in str(
            blocked.headers.get_list("set-cookie")
        )
        assert (await client.get("/mail")).status_code == 303


async def test_html_is_sanitised_and_attachment_names_are_safe(site: Site) -> None:
    await site.add_account("alice")
    await site.deliver("alice", HOSTILE, 1)
    async with site.client() as client:
        await login(client, f"alice@{site.domain}", PASSWORD)
        listing = await client.get("/mail")
        assert "<script>alert(1)</script>" not in listing.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing.text
        page = await client.get("/read?f=INBOX&uid=1")
        assert page.status_code == 200
        body = page.text.split('id="body">', 1)[1].split("</div>\n", 1)[0]
        assert "Hi <b>there</b>" in body
        for bad in ("<script>document", "javascript:", "<form", "<iframe", "<input"):
            assert bad not in body, bad
        assert EVENT_ATTRIBUTE.search(body) is None  # no on...= inside any tag
        assert "tracker.example.test" not in body  # remote image blocked until asked
        assert "1 remote image blocked" in page.text
        assert 'target="_blank"' in body and 'rel="noopener noreferrer"' in body
        assert "<img src=x" not in page.text  # the attachment's name is text, never markup
        shown = await client.get("/read?f=INBOX&uid=1&images=1")
        assert "https://tracker.example.test/pixel.gif" in shown.text
        assert "img-src 'self' https:" in shown.headers["content-security-policy"]
        assert EVENT_ATTRIBUTE.search(shown.text) is None
        download = await client.get("/part?f=INBOX&uid=1&n=1")
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/octet-stream"
        disposition = download.headers["content-disposition"]
        assert disposition.startswith("attachment; filename=")
        name = re.search(r'filename="([^"]*)"', disposition)
        assert name is not None
        assert "/" not in name.group(1) and "<" not in name.group(1) and ".." not in name.group(1)
        assert "sandbox" in download.headers["content-security-policy"]


async def test_another_accounts_message_is_never_reached(site: Site) -> None:
    await site.add_account("alice")
    await site.add_account("bob")
    await site.deliver("alice", message("for alice"), 1)
    await site.deliver("bob", message("bob's first"), 2)
    await site.deliver("bob", message("bob's secret plan", "SECRET-BODY\n"), 3)
    assert len((await site.index("bob")).entries) == 2
    async with site.client() as client:
        await login(client, f"alice@{site.domain}", PASSWORD)
        token = await csrf(client)
        for url in (
            "/read?f=INBOX&uid=2",
            "/part?f=INBOX&uid=2&n=0",
            "/compose?mode=forward&f=INBOX&uid=2",
            "/read?f=../bob/INBOX&uid=1",
            "/mail?f=../bob/INBOX",
            f"/read?f={site.domain}/bob/INBOX&uid=1",
        ):
            page = await client.get(url)
            assert "SECRET-BODY" not in page.text and "secret plan" not in page.text, url
            assert page.status_code in (200, 404), url
            if url.startswith(("/read", "/part")):
                assert page.status_code == 404, url
        reply = await client.post(
            "/act", data={"csrf": token, "f": "INBOX", "uid": "2", "action": "delete"}
        )
        assert reply.status_code == 404
    assert len((await site.index("bob")).entries) == 2


async def test_forms_without_the_csrf_token_are_refused(site: Site) -> None:
    await site.add_account("alice")
    await site.deliver("alice", message("keep me"), 1)
    async with site.client() as client:
        await login(client, f"alice@{site.domain}", PASSWORD)
        reply = await client.post("/act", data={"f": "INBOX", "uid": "1", "action": "delete"})
        assert reply.status_code == 403
        reply = await client.post(
            "/act", data={"csrf": "forged", "f": "INBOX", "uid": "1", "action": "flag"}
        )
        assert reply.status_code == 403
        reply = await client.post(
            "/send",
            data={"to": "victim@example.test", "subject": "x", "text": "x"},
            files={"attachment": ("a.txt", b"a", "text/plain")},
        )
        assert reply.status_code == 403
        reply = await client.post(
            "/password", data={"current": PASSWORD, "new": "x" * 20, "repeat": "x" * 20}
        )
        assert reply.status_code == 403
    async with site.client() as fresh:
        reply = await fresh.post("/login", data={"login": "alice", "password": PASSWORD})
        assert reply.status_code == 403
    entry = next(iter((await site.index("alice")).entries.values()))
    assert entry.flags == frozenset()
    assert await site.todos() == []


async def test_send_with_attachment_queues_as_the_account_and_keeps_a_copy(site: Site) -> None:
    alice = await site.add_account("alice")
    await site.deliver("alice", message("Question", "What time?\n"), 1)
    async with site.client() as client:
        await login(client, alice, PASSWORD)
        page = await client.get("/compose?mode=reply&f=INBOX&uid=1")
        assert "Re: Question" in page.text and "&gt; What time?" in page.text
        token = CSRF_RE.search(page.text)
        assert token is not None
        reply = await client.post(
            "/send",
            data={
                "csrf": token.group(1),
                "mode": "reply",
                "f": "INBOX",
                "uid": "1",
                "to": "bob@example.test",
                "cc": "",
                "bcc": "carol@example.test",
                "subject": "Re: Question",
                "text": "Noon.\n",
                "from": "ceo@example.test",  # ignored: From is the logged-in address
            },
            files={"attachment": ("plan <b>.txt", b"the plan\n", "text/plain")},
        )
        assert reply.status_code == 303, reply.text
    (todo,) = await site.todos()
    assert todo.envelope.sender == alice
    assert list(todo.envelope.recipients) == ["bob@example.test", "carol@example.test"]
    assert todo.origin.kind == "account" and todo.origin.account == alice
    stored = await site.queue.get(body_key(todo.id))
    assert stored.startswith(b"Received: (qmail ") and f"by account {alice}".encode() in stored
    sent = message_from_bytes(stored.split(b"\n", 1)[1], policy=policy.default)
    assert sent["From"] == alice and "Bcc" not in sent and sent["In-Reply-To"]
    (attached,) = list(sent.iter_attachments())
    assert attached.get_filename() == "plan _b_.txt"
    assert attached.get_content() == "the plan\n"
    copies = (await site.index("alice", "Sent")).entries
    assert len(copies) == 1 and "\\Seen" in next(iter(copies.values())).flags
    original = next(iter((await site.index("alice")).entries.values()))
    assert "\\Answered" in original.flags


@pytest.mark.parametrize("field", ["subject", "to", "cc", "bcc"], ids=lambda f: f"crlf-in-{f}")
async def test_a_line_break_in_a_header_field_is_refused(site: Site, field: str) -> None:
    alice = await site.add_account("alice")
    async with site.client() as client:
        await login(client, alice, PASSWORD)
        token = await csrf(client, "/compose")
        data = {"csrf": token, "to": "bob@example.test", "subject": "hi", "text": "x"}
        data[field] = data.get(field, "") + "bob@example.test\r\nBcc: victim@example.test"
        reply = await client.post("/send", data=data, files={"attachment": ("", b"", "")})
        assert reply.status_code == 400
        assert "line break" in reply.text
    assert await site.todos() == []
    assert (await site.index("alice", "Sent")).entries == {}


async def test_oversized_message_is_refused(site: Site) -> None:
    alice = await site.add_account("alice")
    async with site.client() as client:
        await login(client, alice, PASSWORD)
        token = await csrf(client, "/compose")
        reply = await client.post(
            "/send",
            data={"csrf": token, "to": "bob@example.test", "subject": "big", "text": "x"},
            files={"attachment": ("big.bin", b"\0" * 190_000, "application/octet-stream")},
        )
        assert reply.status_code == 413
    assert await site.todos() == []


async def test_paging_sorting_search_flag_move_delete(site: Site) -> None:
    alice = await site.add_account("alice")
    for n in range(25):
        await site.deliver("alice", message(f"Note {n:02d}", f"body {n} zebra{n}\n"), n)
    async with site.client() as client:
        await login(client, alice, PASSWORD)
        first = await client.get("/mail?f=INBOX")
        assert first.text.count('<tr class="') == 20 and "Page 1 of 2" in first.text
        second = await client.get("/mail?f=INBOX&page_no=2")
        assert second.text.count('<tr class="') == 5
        ordered = await client.get("/mail?f=INBOX&sort=subject&order=asc")
        subjects_shown = re.findall(r"Note (\d\d)", ordered.text)
        assert subjects_shown == [f"{n:02d}" for n in range(20)]
        found = await client.get("/mail?f=INBOX&q=note 07&within=subject")
        assert re.findall(r"Note (\d\d)", found.text) == ["07"]
        found = await client.get("/mail?f=INBOX&q=zebra13&within=body")
        assert re.findall(r"Note (\d\d)", found.text) == ["13"]
        token = await csrf(client)
        by_subject = {
            s: u for u, s in await _subjects(site, "alice", "INBOX")
        }  # uid of each subject
        uid = by_subject["Note 03"]
        act = {"csrf": token, "f": "INBOX", "uid": str(uid)}
        assert (await client.post("/act", data={**act, "action": "flag"})).status_code == 303
        assert "\\Flagged" in (await site.index("alice")).by_uid()[uid][1].flags
        # htmx's request for the star: the one row comes back, flagged or not
        fragment = await client.post(
            "/act", data={**act, "action": "unflag", "back": "list"}, headers={"HX-Request": "true"}
        )
        assert fragment.status_code == 200 and fragment.text.strip().startswith("<tr")
        assert "☆" in fragment.text and "Note 03" in fragment.text and "<html" not in fragment.text
        assert "\\Flagged" not in (await site.index("alice")).by_uid()[uid][1].flags
        reply = await client.post("/act", data={**act, "action": "move", "to": "Junk"})
        assert reply.status_code == 303
        assert len((await site.index("alice", "Junk")).entries) == 1
        uid = by_subject["Note 04"]
        reply = await client.post(
            "/act", data={"csrf": token, "f": "INBOX", "uid": str(uid), "action": "delete"}
        )
        assert reply.status_code == 303
        assert len((await site.index("alice")).entries) == 23
        assert len((await site.index("alice", "Trash")).entries) == 1
        folders = await client.get("/mail?f=Trash")
        assert "Note 04" in folders.text


async def _subjects(site: Site, account: str, folder: str) -> list[tuple[int, str]]:
    box = site.box(account)
    index = await box.sync(folder)
    out = []
    for entry in index.entries.values():
        raw = await box.read(folder, entry)
        out.append((entry.uid, message_from_bytes(raw, policy=policy.default)["Subject"]))
    return out


async def test_change_password(site: Site) -> None:
    alice = await site.add_account("alice")
    async with site.client() as client:
        await login(client, alice, PASSWORD)
        token = await csrf(client, "/password")
        new = "a brand new passphrase"
        reply = await client.post(
            "/password", data={"csrf": token, "current": "wrong", "new": new, "repeat": new}
        )
        assert reply.status_code == 403
        reply = await client.post(
            "/password", data={"csrf": token, "current": PASSWORD, "new": new, "repeat": new}
        )
        assert reply.status_code == 200 and "The password is changed." in reply.text
    namespaces = Namespaces.build(site.domain, [site.domain])
    auth = DirectoryAuthenticator(lambda: site.directory, lambda: namespaces)
    assert await auth.authenticate(alice, new) is not None  # pop3d and imapd see it too
    assert await auth.authenticate(alice, PASSWORD) is None
