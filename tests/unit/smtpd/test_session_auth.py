"""The checks at the door in the SMTP dialogue (issue 11): who is checked, what is refused,
what is stored. The DNS checks are replaced by a fixed answer; tests/integration and
tests/e2e ask a real DNS server."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterable
from dataclasses import dataclass, field, replace

from qmesh.auth.dkim import DkimResult
from qmesh.auth.dmarc import DmarcResult
from qmesh.auth.spf import SpfResult
from services.smtpd.authresults import Checked
from services.smtpd.session import Client, Session
from tests.unit.smtpd.test_session import CONFIG, FakeDirectory, FakeQueue

FORGED = Checked(
    SpfResult("fail", "", "mailfrom", "bank.test"),
    None,
    [DkimResult("none")],
    DmarcResult("fail", "bank.test", "reject"),
    "none",
)
MESSAGE = (
    b"Authentication-Results: mx.example.test; dmarc=pass header.from=bank.test\r\n"
    b"From: <ceo@bank.test>\r\nSubject: pay\r\n\r\nnow\r\n.\r\n"
)


@dataclass
class FakeChecks:
    answer: Checked = FORGED
    seen: list[tuple[str, str, str, bytes]] = field(default_factory=list)

    async def check(
        self, *, ip: str, helo: str, sender: str, message: AsyncIterable[bytes], size: int
    ) -> Checked:
        body = b"".join([c async for c in message])
        assert len(body) == size
        self.seen.append((ip, helo, sender, body))
        return self.answer


async def send(
    ip: str = "203.0.113.9", *, dmarcreject: bool = False, login: bool = False
) -> tuple[str, FakeChecks, FakeQueue]:
    checks, queue, directory = FakeChecks(), FakeQueue(), FakeDirectory()
    config = replace(CONFIG, dmarcreject=dmarcreject)
    client = Client(ip, "submission" if login else "smtp", login, True, login)
    session = Session(
        config,
        client,
        queue=queue,
        rcptcheck=directory,
        domains=lambda: frozenset(),
        authenticator=directory,
        checks=checks,
        clock=lambda: 1730790189.0,
    )
    await session.line(b"EHLO client.bank.test\r\n")
    if login:
        await session.line(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0pw") + b"\r\n")
    await session.line(b"MAIL FROM:<ceo@bank.test>\r\n")
    await session.line(b"RCPT TO:<alice@example.test>\r\n")
    await session.line(b"DATA\r\n")
    reader = session.data_reader()
    reader.feed(MESSAGE)
    step, _ = await session.finish_data(reader)
    return step.reply or "", checks, queue


async def test_forgery_recorded_when_dmarcreject_is_off() -> None:
    """RFC 7489 section 6.7 / RFC 8601: by default only recorded; our header on top, the
    forged one claiming our authserv-id removed."""
    reply, checks, queue = await send()
    assert reply.startswith("250 ")
    assert checks.seen[0][:3] == ("203.0.113.9", "client.bank.test", "ceo@bank.test")
    body = queue.queued[0][2]
    assert body.startswith(b"Authentication-Results: mx.example.test;\n\tspf=fail")
    assert b"dmarc=fail (p=reject) header.from=bank.test" in body
    assert b"dmarc=pass" not in body
    assert body.index(b"Authentication-Results") < body.index(b"Received: ")


async def test_forgery_refused_with_dmarcreject() -> None:
    """RFC 7489 section 6.7: p=reject honoured with 550 5.7.1; nothing queued."""
    reply, _, queue = await send(dmarcreject=True)
    assert reply.startswith("550 5.7.1 message refused: the From domain bank.test")
    assert queue.queued == []


async def test_relayclients_authenticated_and_this_host_are_not_checked() -> None:
    """Issue 11: submission and trusted networks are not checked; forged results are still
    removed (RFC 8601 section 5)."""
    for ip, login in (
        ("10.1.2.3", False),
        ("203.0.113.9", True),
        ("127.0.0.1", False),
        ("::1", False),
    ):
        reply, checks, queue = await send(ip, dmarcreject=True, login=login)
        assert reply.startswith("250 "), (ip, reply)
        assert checks.seen == []
        body = queue.queued[0][2]
        assert b"mx.example.test; dmarc=pass" not in body
        assert body.startswith(b"Received: ")
