"""The SMTP dialogue without sockets: SMTPD-01..65, -80..83 (ports replaced by small fakes)."""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmesh.contract.errors import QueueFailure, Temporary
from qmesh.contract.events import Origin, Verdict
from qmesh.contract.ids import QueueId
from qmesh.contract.queue import Queued
from qmesh.routing.classify import RoutingRules
from qmesh.store.base import Body
from services.smtpd.config import SmtpdConfig
from services.smtpd.policy import RelayPolicy
from services.smtpd.session import Client, Session

RULES = RoutingRules.build(
    envnoathost="mx.example.test",
    percenthack=["example.test"],
    locals=["mx.example.test", "example.test"],
    virtualdomains=[("virt.example.test", "carol")],
)
CONFIG = SmtpdConfig(
    greeting="mx.example.test",
    localname="mx.example.test",
    relay=RelayPolicy(frozenset({"example.test", "mx.example.test"}), frozenset(), RULES),
    relayclients=((ipaddress.ip_network("10.0.0.0/8"), ""),),
    databytes=1000,
    maxrcpt=3,
    badmailfrom=frozenset({"spammer@bad.test", "@evil.test"}),
    ipme=frozenset({"192.0.2.25"}),
    localiphost="mx.example.test",
)


@dataclass
class FakeQueue:
    queued: list[tuple[str, list[str], bytes, Origin]] = field(default_factory=list)
    failure: QueueFailure | None = None
    down: bool = False

    def available(self) -> bool:
        return not self.down

    async def enqueue(
        self, sender: str, recipients: list[str], body: Body, origin: Origin, smtputf8: bool
    ) -> Queued:
        if self.failure:
            raise self.failure
        if not isinstance(body, bytes):
            body = b"".join([chunk async for chunk in body])
        self.queued.append((sender, list(recipients), body, origin))
        return Queued(QueueId("1732510000000.0123456789abcdef"), 4711, len(body), 1732510000.5)


@dataclass
class FakeDirectory:
    """Recipient check and authenticator: accounts of mx.example.test."""

    accounts: dict[str, str] = field(default_factory=lambda: {"alice": "pw"})
    down: bool = False

    async def verify(self, recipient: str, namespace: str) -> Verdict:
        if self.down:
            return "tempfail"
        name = recipient.partition("@")[0].lower()
        return "valid" if name in (*self.accounts, "postmaster") else "invalid"

    async def authenticate(self, login: str, password: str) -> str | None:
        if self.down:
            raise Temporary("directory down")
        name = login.partition("@")[0]
        return f"{name}@mx.example.test" if self.accounts.get(name) == password else None


@dataclass
class Dialogue:
    session: Session
    queue: FakeQueue
    directory: FakeDirectory

    async def say(self, line: str | bytes) -> str:
        raw = line if isinstance(line, bytes) else line.encode() + b"\r\n"
        step = await self.session.line(raw)
        return step.reply or ""

    async def data(self, body: bytes) -> str:
        assert await self.say("DATA") == "354 go ahead"
        reader = self.session.data_reader()
        reader.feed(body)
        step, _ = await self.session.finish_data(reader)
        return step.reply or ""


def dialogue(
    *,
    ip: str = "203.0.113.9",
    listener: str = "smtp",
    submission: bool = False,
    tls: bool = False,
    tls_available: bool = True,
    config: SmtpdConfig = CONFIG,
    domains: frozenset[str] | None = frozenset({"dir.test"}),
) -> Dialogue:
    queue, directory = FakeQueue(), FakeDirectory()

    def names() -> frozenset[str]:
        if domains is None:
            raise Temporary("directory down")
        return domains

    session = Session(
        config,
        Client(ip, listener, submission, tls_available, tls),
        queue=queue,
        rcptcheck=directory,
        domains=names,
        authenticator=directory,
        clock=lambda: 1730790189.0,
    )
    return Dialogue(session, queue, directory)


async def test_smtpd_01_02_greeting_and_mail_without_helo() -> None:
    d = dialogue()
    assert d.session.greeting() == "220 mx.example.test ESMTP"
    assert await d.say("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"  # SMTPD-02
    assert await d.say("RCPT TO:<alice@example.test>") == "250 2.1.5 ok"
    assert await d.data(b"Subject: hi\r\n\r\nhello\r\n.\r\n") == "250 2.0.0 ok 1732510000 qp 4711"
    (sender, rcpts, body, origin) = d.queue.queued[0]
    assert (sender, rcpts, origin.client_ip) == (
        "joe@far.test",
        ["alice@example.test"],
        "203.0.113.9",
    )
    # SMTPD-24, -54, -58: no HELO given, none shown
    assert body == (
        b"Received: from unknown (203.0.113.9)\n  by mx.example.test with SMTP; "
        b"5 Nov 2024 07:03:09 -0000\nSubject: hi\n\nhello\n"
    )


async def test_smtpd_13_14_72_bad_lines_and_the_session_goes_on() -> None:
    d = dialogue()
    assert await d.say("EXPN list") == "502 5.5.1 unimplemented (#5.5.1)"
    assert await d.say(b"NOOP a\0b\r\n") == "501 5.5.2 syntax error"
    assert (await d.session.line(b"NOOP\r\n", overlong=True)).reply == "500 5.5.2 line too long"
    assert await d.say("NOOP") == "250 2.0.0 ok"


async def test_smtpd_20_21_22_23_helo_and_ehlo() -> None:
    d = dialogue()
    assert await d.say("HELO") == "501 5.5.4 HELO/EHLO requires a domain"
    assert await d.say("HELO client.test") == "250 mx.example.test"
    assert await d.say("EHLO client.test") == (
        "250-mx.example.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 SMTPUTF8"
    )
    d.session.tls_started()
    assert await d.say("EHLO client.test") == (
        "250-mx.example.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8"
    )  # no STARTTLS once active, no AUTH on port 25 (SMTPD-82)


async def test_smtpd_20_30_helo_and_mail_reset_the_transaction() -> None:
    """SMTPD-20, -30, -40 (RCPT and DATA before MAIL get 503), -46 (accepted RCPTs are kept)."""
    d = dialogue()
    await d.say("MAIL FROM:<joe@far.test>")
    assert await d.say("RCPT TO:<alice@example.test>") == "250 2.1.5 ok"
    await d.say("MAIL FROM:<other@far.test>")  # SMTPD-30: recipients dropped
    assert await d.say("DATA") == "503 5.5.1 RCPT first (#5.5.1)"
    await d.say("HELO again.test")
    assert await d.say("RCPT TO:<alice@example.test>") == "503 5.5.1 MAIL first (#5.5.1)"


async def test_smtpd_35_badmailfrom_refuses_every_rcpt() -> None:
    for sender in ("Spammer@Bad.test", "anyone@evil.test"):
        d = dialogue()
        assert await d.say(f"MAIL FROM:<{sender}>") == "250 2.1.0 ok"
        assert await d.say("RCPT TO:<alice@example.test>") == (
            "553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1)"
        )
    d = dialogue()
    await d.say("MAIL FROM:<a@sub.evil.test>")  # subdomains are not matched
    assert await d.say("RCPT TO:<alice@example.test>") == "250 2.1.5 ok"


@pytest.mark.parametrize(
    ("rcpt", "reply"),
    [
        (
            "someone@elsewhere.test",
            "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        ),
        ("user%elsewhere.test@example.test", "553 5.7.1 sorry, relaying denied"),  # SMTPD-43
        ("user@elsewhere.test@example.test", "550 5.1.1 sorry, no mailbox here by that name"),
        ("elsewhere.test!user@example.test", "550 5.1.1 sorry, no mailbox here by that name"),
        (
            "@example.test:user@elsewhere.test",
            "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        ),
        ('"user@elsewhere.test"@example.test', "550 5.1.1 sorry, no mailbox here by that name"),
        (
            "user@[192.0.2.99]",
            "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        ),
        ("alice@[192.0.2.25]", "250 2.1.5 ok"),  # SMTPD-41 localiphost
        ("postmaster", "250 2.1.5 ok"),  # no @: envnoathost
        ("PostMaster@Example.TEST", "250 2.1.5 ok"),
        ("nobody@example.test", "550 5.1.1 sorry, no mailbox here by that name"),  # SMTPD-45
        ("<>", "501 5.1.3 bad recipient address syntax"),  # SMTPD-47
        ("user%elsewhere.test", "550 5.1.1 sorry, no mailbox here by that name"),  # stays local
        ("postmaster@dir.test", "250 2.1.5 ok"),  # hardening #13: a directory domain
        ("postmaster@DIR.test", "250 2.1.5 ok"),
        (
            "postmaster@sub.dir.test",
            "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        ),
    ],
)
async def test_smtpd_42_43_45_relay_tricks_from_a_stranger(rcpt: str, reply: str) -> None:
    d = dialogue()
    await d.say("MAIL FROM:<joe@far.test>")
    arg = rcpt if rcpt == "<>" else f"<{rcpt}>"
    assert await d.say(f"RCPT TO:{arg}") == reply


async def test_smtpd_42_relay_client_appends_relayclient_and_is_not_verified() -> None:
    d = dialogue(ip="10.1.2.3")
    await d.say("MAIL FROM:<alice@example.test>")
    assert await d.say("RCPT TO:<someone@elsewhere.test>") == "250 2.1.5 ok"
    assert (await d.data(b"x\r\n.\r\n")).startswith("250 2.0.0 ok ")
    assert d.queue.queued[0][1] == ["someone@elsewhere.test"]


async def test_smtpd_44_maxrcpt_and_48_order() -> None:
    """SMTPD-44, SMTPD-48: the first failing check decides the reply."""
    d = dialogue()
    await d.say("MAIL FROM:<joe@far.test>")
    for _ in range(3):
        assert await d.say("RCPT TO:<alice@example.test>") == "250 2.1.5 ok"
    assert await d.say("RCPT TO:<alice@example.test>") == "452 4.5.3 too many recipients"
    assert await d.say("RCPT TO:<>") == "501 5.1.3 bad recipient address syntax"  # (4) before (6)
    assert await d.say("RCPT TO:<a@b> NOTIFY=NEVER") == "555 5.5.4 unsupported parameter"


async def test_smtpd_45_lookup_failures_are_temporary() -> None:
    d = dialogue()
    d.directory.down = True
    await d.say("MAIL FROM:<joe@far.test>")
    assert (
        await d.say("RCPT TO:<alice@example.test>")
        == "451 4.3.0 temporary recipient lookup failure"
    )
    d = dialogue(domains=None)  # the directory's domain names cannot be read either
    await d.say("MAIL FROM:<joe@far.test>")
    assert (
        await d.say("RCPT TO:<alice@example.test>")
        == "451 4.3.0 temporary recipient lookup failure"
    )


async def test_smtpd_50_55_57_60_data_outcomes() -> None:
    d = dialogue()
    assert await d.say("DATA") == "503 5.5.1 MAIL first (#5.5.1)"
    await d.say("MAIL FROM:<joe@far.test>")
    await d.say("RCPT TO:<alice@example.test>")
    too_big = b"x" * 1001 + b"\r\n.\r\n"
    assert await d.data(too_big) == (
        "552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)"
    )
    assert await d.say("DATA") == "503 5.5.1 MAIL first (#5.5.1)"  # consumed
    await d.say("MAIL FROM:<joe@far.test>")
    await d.say("RCPT TO:<alice@example.test>")
    d.queue.failure = QueueFailure(53)
    assert await d.data(b"x\r\n.\r\n") == "451 4.3.0 qq write error or disk full (#4.3.0)"
    assert d.queue.queued == []


async def test_smtpd_50_queue_known_down_is_451_before_354() -> None:
    """SMTPD-50; SMTPD-36: MAIL and RCPT still get 250 while the queue is down."""
    d = dialogue()
    d.queue.down = True
    assert await d.say("MAIL FROM:<joe@far.test>") == "250 2.1.0 ok"
    assert await d.say("RCPT TO:<alice@example.test>") == "250 2.1.5 ok"
    assert await d.say("DATA") == "451 4.3.0 qqt failure (#4.3.0)"
    d.queue.down = False
    assert await d.say("DATA") == "354 go ahead"  # the transaction was kept


async def test_smtpd_51_bare_lf_is_451_and_close() -> None:
    d = dialogue()
    await d.say("MAIL FROM:<joe@far.test>")
    await d.say("RCPT TO:<alice@example.test>")
    assert await d.say("DATA") == "354 go ahead"
    reader = d.session.data_reader()
    reader.feed(b"a\n.\n")
    step, queued = await d.session.finish_data(reader)
    assert step.reply == "451 4.5.2 See https://cr.yp.to/docs/smtplf.html." and step.close
    assert queued is None and d.queue.queued == []


async def test_smtpd_61_to_65_other_commands() -> None:
    """SMTPD-61 RSET, SMTPD-62 NOOP, SMTPD-63 VRFY, SMTPD-64 HELP, SMTPD-65 QUIT; every 2xx
    carries an enhanced code (SMTPD-83)."""
    d = dialogue()
    assert await d.say("RSET") == "250 2.0.0 flushed"
    assert await d.say("NOOP whatever") == "250 2.0.0 ok"
    assert await d.say("VRFY alice") == "252 2.0.0 send some mail, i'll try my best"
    assert (await d.say("HELP")).startswith("214 ")
    step = await d.session.line(b"QUIT\r\n")
    assert (step.reply, step.close) == ("221 2.0.0 mx.example.test", True)


async def test_smtpd_80_starttls() -> None:
    d = dialogue()
    assert await d.say("STARTTLS now") == "501 5.5.4 syntax error"
    await d.say("EHLO client.test")
    step = await d.session.line(b"STARTTLS\r\n")
    assert (step.reply, step.start_tls) == ("220 2.0.0 ready to start TLS", True)
    d.session.tls_started()
    assert d.session.helo is None  # forgotten
    assert await d.say("STARTTLS") == "503 5.5.1 already using TLS"
    assert await dialogue(tls_available=False).say("STARTTLS") == "502 5.5.1 unimplemented (#5.5.1)"


async def test_smtpd_81_82_auth_on_submission() -> None:
    d = dialogue(listener="submission", submission=True)
    assert await d.say("MAIL FROM:<alice@example.test>") == "530 5.7.0 authentication required"
    assert await d.say("AUTH PLAIN AGFsaWNlAHB3") == (
        "538 5.7.11 encryption required for requested authentication mechanism"
    )
    d.session.tls_started()
    assert "250-AUTH PLAIN LOGIN" in await d.say("EHLO client.test")
    assert await d.say("AUTH CRAM-MD5") == "504 5.5.4 unrecognized authentication mechanism"
    assert await d.say("AUTH PLAIN !!!") == "501 5.5.2 cannot decode the response"
    wrong = base64.b64encode(b"\0alice\0nope").decode()
    assert await d.say(f"AUTH PLAIN {wrong}") == "535 5.7.8 authentication credentials invalid"
    assert await d.say("AUTH PLAIN") == "334 "
    assert await d.say("*") == "501 5.7.0 authentication cancelled"
    assert await d.say("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert await d.say(base64.b64encode(b"alice").decode()) == "334 UGFzc3dvcmQ6"
    assert await d.say(base64.b64encode(b"pw").decode()) == "235 2.7.0 authentication successful"
    assert await d.say("AUTH PLAIN AGFsaWNlAHB3") == (
        "503 5.5.1 already authenticated or inside a transaction"
    )
    await d.say("EHLO client.test")
    await d.say("MAIL FROM:<alice@example.test>")
    assert await d.say("RCPT TO:<anyone@elsewhere.test>") == "250 2.1.5 ok"  # relays
    assert (await d.data(b"x\r\n.\r\n")).startswith("250 ")
    _, _, body, origin = d.queue.queued[0]
    assert origin.auth_user == "alice@mx.example.test"
    assert b"with ESMTPSA;" in body  # SMTPD-58


async def test_smtpd_81_auth_is_not_offered_on_port_25() -> None:
    d = dialogue(tls=True)
    assert await d.say("AUTH PLAIN AGFsaWNlAHB3") == "502 5.5.1 unimplemented (#5.5.1)"


COMMANDS = st.sampled_from(
    [
        "HELO",
        "EHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "RSET",
        "NOOP",
        "VRFY",
        "HELP",
        "AUTH",
        "STARTTLS",
        "XYZ",
    ]
)
ARGS = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["FROM:<a@b.test>", "TO:<alice@example.test>", "FROM:<>", "TO:<%@>", "PLAIN"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(COMMANDS, ARGS), max_size=12), st.binary(max_size=80))
async def test_fuzz_replies_are_always_well_formed(
    commands: list[tuple[str, str]], noise: bytes
) -> None:
    """Random command lines never crash the session nor produce a reply outside SMTP's codes."""
    d = dialogue(listener="submission", submission=True, tls=True)
    lines = [f"{verb} {arg}".encode("utf-8", "surrogateescape") + b"\r\n" for verb, arg in commands]
    for line in [*lines, noise + b"\r\n"]:
        step = await d.session.line(line)
        if step.data:
            reader = d.session.data_reader()
            reader.feed(noise + b"\r\n.\r\n")
            step, _ = await d.session.finish_data(reader)
        reply = step.reply or ""
        for reply_line in reply.split("\r\n"):
            code = reply_line[:3]
            assert code in ALLOWED, reply
        if step.close:
            break


ALLOWED = {
    "214", "220", "221", "235", "250", "252", "334", "354", "421", "451", "452", "454",
    "500", "501", "502", "503", "504", "530", "535", "538", "550", "552", "553", "554", "555",
}  # fmt: skip


async def test_smtpd_04_a_session_keeps_the_controls_it_started_with() -> None:
    """SMTPD-04: a control changed during a session affects new sessions only."""
    d = dialogue()
    assert d.session.config is CONFIG
    await d.say("MAIL FROM:<joe@far.test>")
    assert await d.say("RCPT TO:<alice@example.test>") == "250 2.1.5 ok"
    assert d.session.config is CONFIG
