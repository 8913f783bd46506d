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
from services.smtpd.qmtp import Package, stored_form
from services.smtpd.qmtp import decide as decide_package
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


async def qmtp(
    ip: str = "203.0.113.9", *, dmarcreject: bool = False, sender: bytes = b"ceo@bank.test"
) -> tuple[bytes, FakeChecks, FakeQueue]:
    """One QMTP package of MESSAGE through :func:`services.smtpd.qmtp.decide`, with a
    :class:`Session` as its defences (what the server hands it)."""
    checks, queue, directory = FakeChecks(), FakeQueue(), FakeDirectory()
    config = replace(CONFIG, dmarcreject=dmarcreject)
    session = Session(
        config,
        Client(ip, "qmtp"),
        queue=queue,
        rcptcheck=directory,
        domains=lambda: frozenset(),
        checks=checks,
        clock=lambda: 1730790189.0,
    )
    encoded = b"\r" + MESSAGE[: -len(b".\r\n")]
    package = Package(encoded, len(stored_form(encoded)), sender, [b"alice@example.test"])
    [verdict], _ = await decide_package(
        package,
        config=config,
        client_ip=ip,
        relayclient=session.relayclient,
        domains=session.domains,
        rcptcheck=directory,
        queue=queue,
        defences=session,
        clock=lambda: 1730790189.0,
    )
    return verdict.qmtp(), checks, queue


async def test_qmtp_package_is_checked_and_recorded_like_smtp() -> None:
    """RFC 7208 / RFC 7489 / RFC 8601 over QMTP: the same checks (no HELO in QMTP-16), our
    Authentication-Results on top, the forged one claiming our authserv-id removed."""
    reply, checks, queue = await qmtp()
    assert reply.startswith(b"Kok ")
    assert checks.seen == [("203.0.113.9", "", "ceo@bank.test", stored_form(b"\r" + MESSAGE[:-3]))]
    body = queue.queued[0][2]
    assert body.startswith(b"Authentication-Results: mx.example.test;\n\tspf=fail")
    assert b"dmarc=fail (p=reject) header.from=bank.test" in body
    assert b"dmarc=pass" not in body
    assert body.index(b"Authentication-Results") < body.index(b"Received: ") < body.index(b"From:")


async def test_qmtp_forgery_refused_with_dmarcreject() -> None:
    """RFC 7489 section 6.7 over QMTP: p=reject honoured, a permanent D; nothing queued."""
    reply, _, queue = await qmtp(dmarcreject=True)
    assert reply.startswith(b"Dmessage refused: the From domain bank.test")
    assert queue.queued == []


async def test_qmtp_relayclients_and_this_host_are_not_checked_but_stripped() -> None:
    """Issue 11: trusted clients are not checked over QMTP either; a forged result claiming
    our authserv-id is removed all the same (RFC 8601 section 5)."""
    for ip in ("10.1.2.3", "127.0.0.1", "::1"):
        reply, checks, queue = await qmtp(ip, dmarcreject=True)
        assert reply.startswith(b"Kok "), (ip, reply)
        assert checks.seen == []
        body = queue.queued[0][2]
        assert body.startswith(b"Received: ") and b"Authentication-Results" not in body


async def test_qmtp_without_defences_still_strips_our_claims() -> None:
    """RFC 8601 section 5: a QMTP package decided without any defences (no checks at all)
    still loses an Authentication-Results claiming our id and any X-Qmesh-Quarantine."""
    queue = FakeQueue()
    encoded = (
        b"\nX-Qmesh-Quarantine: none\nAuthentication-Results: (c) MX.example.test;\n"
        b" dkim=pass header.d=bank.test\nAuthentication-Results: other.test; dkim=fail\n"
        b"From: <ceo@bank.test>\n\nbody\n"
    )
    package = Package(encoded, len(encoded) - 1, b"ceo@bank.test", [b"alice@example.test"])
    [verdict], _ = await decide_package(
        package,
        config=CONFIG,
        client_ip="203.0.113.9",
        relayclient=None,
        domains=lambda: frozenset(),
        rcptcheck=FakeDirectory(),
        queue=queue,
        clock=lambda: 1730790189.0,
    )
    assert verdict.qmtp().startswith(b"Kok ")
    body = queue.queued[0][2]
    assert b"dkim=pass" not in body and b"X-Qmesh-Quarantine" not in body
    assert b"Authentication-Results: other.test; dkim=fail\nFrom: <ceo@bank.test>\n\nbody\n" in body
