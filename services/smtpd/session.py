"""One SMTP session as a state machine: a command line in, a reply out (SMTPD-01..87).

No sockets here: the server adapter reads lines and DATA bytes and performs what a
:class:`Step` asks (enter DATA, start TLS, close). The ports — the queue, the recipient check,
the authenticator, the directory's domain names — are handed in, so the whole dialogue is
tested without a network.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Container
from dataclasses import dataclass, field
from typing import Literal, Protocol

from qmesh.address import client_address
from qmesh.contract.errors import QueueFailure, Temporary
from qmesh.contract.events import Origin
from qmesh.contract.queue import Queued
from qmesh.limits.rules import Limits
from qmesh.store.base import Body
from services.smtpd import replies
from services.smtpd.authresults import Checked, decide, header_lines, without_our_claims
from services.smtpd.blocklist import Zone
from services.smtpd.config import SmtpdConfig
from services.smtpd.content import UNAVAILABLE, Scan
from services.smtpd.data import BARE_LINE_END, DataReader
from services.smtpd.policy import sender_is_bad
from services.smtpd.protocol import (
    BAD_PARAM,
    EMPTY_RCPT,
    PathError,
    check_ascii,
    mail_params,
    parse_command,
    parse_path,
)
from services.smtpd.received import received_line
from services.smtpd.recipients import RecipientCheck, judge_recipient
from services.smtpd.verdict import Verdict


class Queue(Protocol):
    def available(self) -> bool:
        """False when the queue is known to be unreachable (SMTPD-50: 451 before 354)."""
        ...

    async def enqueue(
        self, sender: str, recipients: list[str], body: Body, origin: Origin, smtputf8: bool
    ) -> Queued: ...


class Authenticator(Protocol):
    async def authenticate(self, login: str, password: str) -> str | None:
        """The authenticated identity (``account@domain``), or ``None``; may raise Temporary
        or :class:`LoginBlocked`."""
        ...


class LoginBlocked(Exception):
    """Too many failed logins from this client (``authfailures``, docs/defences.md)."""


class Scanner(Protocol):
    """The content filter (:class:`services.smtpd.rspamd.RspamdScanner`)."""

    async def scan(
        self,
        url: str,
        message: AsyncIterator[bytes],
        size: int,
        *,
        ip: str,
        helo: str | None,
        sender: str,
        recipients: list[str],
        user: str | None,
    ) -> Scan | None:
        """The filter's judgement, or ``None`` when it could not be asked."""
        ...


class Blocklists(Protocol):
    """DNS blocklists (:class:`services.smtpd.dnsbl.DnsBlocklists`)."""

    async def check(self, ip: str, zones: tuple[Zone, ...]) -> Verdict | None:
        """The refusal of the first zone listing ``ip``; ``None``, also when DNS fails."""
        ...


class Limiter(Protocol):
    """The cluster-wide message and recipient rates (:class:`qmesh.limits.anvil.Anvil`)."""

    @property
    def limits(self) -> Limits:
        """The limits now (``0``: off)."""
        ...

    def charges(self) -> bool:
        """Whether a rate limit is set at all (else no message is counted)."""
        ...

    async def charge(self, remote: str, recipients: int, *, messages: int = 1) -> bool:
        """Count messages and recipients; ``False`` when over this minute's limit."""
        ...


class DoorCheck(Protocol):
    """SPF, DKIM, DMARC and ARC (:class:`services.smtpd.authcheck.DoorChecks`)."""

    async def check(
        self, *, ip: str, helo: str, sender: str, message: AsyncIterable[bytes], size: int
    ) -> Checked:
        """The results; DNS trouble is ``temperror`` in them, never an exception."""
        ...


UNCHECKED = frozenset({"127.0.0.1", "::1"})  # this host itself (OpenDMARC's IgnoreHosts)


@dataclass(frozen=True, slots=True)
class Client:
    """What the connection tells about the client (SMTPD-03)."""

    ip: str
    listener: str
    submission: bool = False  # SMTPD-82: MAIL needs AUTH first
    tls_available: bool = False
    tls_active: bool = False  # implicit TLS (SMTPD-87)
    host: str = "unknown"  # reverse DNS is not looked up


@dataclass(frozen=True, slots=True)
class Step:
    """What to answer: a :class:`Verdict`, or dialogue text that decides nothing (EHLO's
    lines, an AUTH challenge), or ``None`` for nothing to say."""

    answer: Verdict | str | None
    close: bool = False
    data: bool = False  # read DATA bytes next, then call finish_data()
    start_tls: bool = False

    @property
    def verdict(self) -> Verdict | None:
        return self.answer if isinstance(self.answer, Verdict) else None

    @property
    def reply(self) -> str | None:
        """The reply as SMTP text, formatted here once."""
        answer = self.answer
        return answer.smtp() if isinstance(answer, Verdict) else answer

    def wire(self) -> bytes:
        reply = self.reply
        return b"" if reply is None else reply.encode("utf-8", "replace") + b"\r\n"


@dataclass(slots=True)
class _Transaction:
    sender: str
    smtputf8: bool = False
    recipients: list[str] = field(default_factory=list)


AuthState = Literal["plain", "login-user", "login-password"]


class Session:
    def __init__(
        self,
        config: SmtpdConfig,
        client: Client,
        *,
        queue: Queue,
        rcptcheck: RecipientCheck,
        domains: Callable[[], Container[str]],
        authenticator: Authenticator | None = None,
        limiter: Limiter | None = None,
        scanner: Scanner | None = None,
        blocklists: Blocklists | None = None,
        checks: DoorCheck | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config  # SMTPD-04: the controls as they were when the session began
        self.client = client
        self.queue = queue
        self.rcptcheck = rcptcheck
        self.domains = domains
        self._authenticator = authenticator
        self._limiter = limiter
        self._scanner = scanner
        self._blocklists = blocklists
        self._checks = checks
        self._listing: asyncio.Task[Verdict | None] | None = None  # begun at the greeting
        self._charge: asyncio.Task[bool] | None = None  # the rate check, begun at DATA
        self._clock = clock
        self.tls = client.tls_active
        self.helo: str | None = None
        self.extended = False
        self.auth_user: str | None = None
        self.relayclient = config.relayclient(client.ip)
        self._tx: _Transaction | None = None
        self._auth: AuthState | None = None
        self._auth_login = ""

    # -- framing -----------------------------------------------------------------------------

    def greeting(self) -> str:
        """The banner; the DNS blocklists are asked now, and answered by MAIL (rblsmtpd)."""
        self.ask_blocklists()
        return f"220 {self.config.greeting} ESMTP"

    # -- the defences, shared with QMTP (defences #12) ---------------------------------------

    def ask_blocklists(self) -> None:
        """Begin the DNS blocklist lookup of this client (at connect); relayclients are exempt."""
        zones = self.config.dnsbl
        if self._blocklists is not None and zones and self.relayclient is None:
            self._listing = asyncio.create_task(self._blocklists.check(self.client.ip, zones))

    async def listing(self) -> Verdict | None:
        """The refusal of a DNS blocklist listing this client, once the lookup is answered."""
        return None if self._listing is None else await self._listing

    async def within_rates(self, recipients: int) -> bool:
        """Count one message of ``recipients`` against ``clientmessages``/``clientrecipients``;
        ``False`` when it is over. relayclients and authenticated clients are exempt."""
        limiter = self._limiter
        if limiter is None or self.relayclient is not None or self.auth_user is not None:
            return True
        if not limiter.charges():
            return True
        return await limiter.charge(self.client.ip, recipients)

    async def content(
        self,
        sender: str,
        recipients: list[str],
        message: AsyncIterator[bytes],
        size: int,
        trace: bytes,
    ) -> bytes | Verdict:
        """The content filter's refusal of ``message`` (``trace`` first, ``size`` bytes in
        all), or the head to store: ``trace`` and its X-Spam-* lines."""
        url = self.config.rspamd
        if self._scanner is None or url is None:
            return trace
        if self.auth_user is not None and not self.config.rspamd_submission:
            return trace
        scan = await self._scanner.scan(
            url,
            message,
            size,
            ip=self.client.ip,
            helo=self.helo,
            sender=sender,
            recipients=recipients,
            user=self.auth_user,
        )
        if scan is None:  # unreachable: accept (logged), or 451 if the controls say so
            return UNAVAILABLE if self.config.rspamd_tempfail else trace
        if scan.refusal is not None:
            return scan.refusal
        return trace + scan.headers

    @property
    def reading_auth(self) -> bool:
        """The next line is an AUTH response, not a command (longer lines allowed)."""
        return self._auth is not None

    async def line(self, line: bytes, *, overlong: bool = False) -> Step:
        if self._auth is not None:
            return await self._auth_response(line, overlong)
        if overlong:
            return Step(replies.LINE_TOO_LONG)  # SMTPD-72
        command = parse_command(line)
        if command.has_nul:
            return Step(replies.NUL_IN_COMMAND)  # SMTPD-14
        handler = _COMMANDS.get(command.verb)
        if handler is None:
            return Step(replies.UNIMPLEMENTED)  # SMTPD-13
        return await handler(self, command.arg)

    def tls_started(self) -> None:
        """SMTPD-80: after the handshake, forget HELO and the transaction."""
        self.tls, self.helo, self.extended, self._tx = True, None, False, None

    # -- HELO, EHLO, RSET, NOOP, VRFY, HELP, QUIT ------------------------------------------

    async def _helo(self, arg: str) -> Step:
        if not arg:
            return Step(replies.HELO_ARGUMENT)  # SMTPD-23
        self.helo, self.extended, self._tx = arg, False, None
        return Step(f"250 {self.config.greeting}")

    async def _ehlo(self, arg: str) -> Step:
        if not arg:
            return Step(replies.HELO_ARGUMENT)
        self.helo, self.extended, self._tx = arg, True, None
        lines = [self.config.greeting, *self.extensions()]
        text = "\r\n".join(f"250-{x}" for x in lines[:-1]) + f"\r\n250 {lines[-1]}"
        return Step(text)

    def extensions(self) -> list[str]:
        """SMTPD-22, in order."""
        size = f"SIZE {self.config.databytes}" if self.config.databytes else "SIZE"
        ext = ["PIPELINING", "8BITMIME", size, "ENHANCEDSTATUSCODES"]
        if self.client.tls_available and not self.tls:
            ext.append("STARTTLS")
        if self._auth_offered():
            ext.append("AUTH " + " ".join(self.config.smtpauth))
        ext.append("SMTPUTF8")
        return ext

    def _auth_offered(self) -> bool:
        """SMTPD-81/82: on the submission listeners, once TLS is active."""
        return (
            self._authenticator is not None
            and self.client.submission
            and self.tls
            and bool(self.config.smtpauth)
        )

    async def _rset(self, arg: str) -> Step:
        self._tx = None
        return Step(replies.FLUSHED)  # SMTPD-61

    async def _noop(self, arg: str) -> Step:
        return Step(replies.OK)  # SMTPD-62

    async def _vrfy(self, arg: str) -> Step:
        return Step(replies.VRFY)  # SMTPD-63

    async def _help(self, arg: str) -> Step:
        return Step(replies.HELP)  # SMTPD-64

    async def _quit(self, arg: str) -> Step:
        return Step(f"221 2.0.0 {self.config.greeting}", close=True)  # SMTPD-65

    # -- MAIL, RCPT --------------------------------------------------------------------------

    async def _mail(self, arg: str) -> Step:
        if self.client.submission and self.auth_user is None:
            return Step(replies.AUTH_REQUIRED)  # SMTPD-82
        try:
            path = parse_path(arg, "FROM:")
            size, smtputf8 = mail_params(
                path.params, extended=self.extended, databytes=self.config.databytes
            )
            check_ascii(path.address, smtputf8)
        except PathError as err:
            return Step(err.verdict)
        del size  # advisory only (SMTPD-56); SMTPD-55 decides at the end of DATA
        if self._listing is not None and self.auth_user is None:
            listing = await self._listing  # a listed client may not send (rblsmtpd)
            if listing is not None:
                return Step(listing)
        self._tx = _Transaction(path.address, smtputf8)  # SMTPD-30: a new transaction
        return Step(replies.MAIL_OK)

    async def _rcpt(self, arg: str) -> Step:
        """SMTPD-48: the first failing check decides."""
        tx = self._tx
        if tx is None:
            return Step(replies.MAIL_FIRST)
        try:
            path = parse_path(arg, "TO:")
            if path.params:
                raise PathError(BAD_PARAM)
            check_ascii(path.address, tx.smtputf8)
        except PathError as err:
            return Step(err.verdict)
        if not path.address:
            return Step(Verdict.of(EMPTY_RCPT))  # SMTPD-47
        if sender_is_bad(tx.sender, self.config.badmailfrom):
            return Step(replies.BADMAILFROM)  # SMTPD-35
        if len(tx.recipients) >= self.config.maxrcpt:
            return Step(replies.TOO_MANY_RCPTS)  # SMTPD-44
        accepted, verdict = await judge_recipient(
            path.address,
            config=self.config,
            relayclient=self.relayclient if self.auth_user is None else "",
            domains=self.domains,
            rcptcheck=self.rcptcheck,
        )
        if accepted is None:
            return Step(verdict)
        if not await self._recipient_within_rate():
            return Step(replies.TOO_MANY_RECIPIENTS)  # clientrecipients (defences #12)
        tx.recipients.append(accepted)
        return Step(replies.RCPT_OK)  # SMTPD-46

    async def _recipient_within_rate(self) -> bool:
        """Count one recipient against ``clientrecipients``, as Postfix's anvil does at RCPT."""
        limiter = self._limiter
        if limiter is None or self.relayclient is not None or self.auth_user is not None:
            return True
        if not limiter.limits.client_recipients:
            return True
        return await limiter.charge(self.client.ip, 1, messages=0)

    # -- DATA --------------------------------------------------------------------------------

    async def _data(self, arg: str) -> Step:
        if self._tx is None:
            return Step(replies.MAIL_FIRST)  # SMTPD-50
        if not self._tx.recipients:
            return Step(replies.RCPT_FIRST)
        if not self.queue.available():
            return Step(replies.QQT_FAILURE)
        limiter = self._limiter
        exempt = self.relayclient is not None or self.auth_user is not None
        if limiter is not None and not exempt and limiter.limits.client_messages:
            # the message, counted while the body arrives (its recipients were, at RCPT)
            self._charge = asyncio.create_task(limiter.charge(self.client.ip, 0))
        return Step(replies.GO_AHEAD, data=True)

    def data_reader(self) -> DataReader:
        return DataReader(self.config.databytes)

    async def finish_data(self, data: DataReader) -> tuple[Step, Queued | None]:
        """After the end of data (or a bare line end): the reply, and what was queued."""
        tx, self._tx = self._tx, None  # the transaction is consumed, whatever happens
        assert tx is not None
        charge, self._charge = self._charge, None
        if data.bare:
            return Step(BARE_LINE_END, close=True), None  # SMTPD-51
        refusal = data.verdict()
        if refusal is not None:  # hops first, then databytes (SMTPD-60)
            return Step(refusal), None
        if charge is not None and not await charge:
            return Step(replies.TOO_MANY_MESSAGES), None
        results = await self.door(tx.sender, data.body(b""), data.size)
        if isinstance(results, Verdict):
            return Step(results), None
        trace = received_line(
            remotehost=self.client.host,
            helo=self.helo,
            remoteip=self.client.ip,
            localname=self.config.localname,
            proto=self._proto(tx.smtputf8),
            when=self._clock(),
        )
        scanned = await self._scan(tx, data, trace)
        if isinstance(scanned, Verdict):
            return Step(scanned), None
        origin = Origin(kind="network", client_ip=self.client.ip, auth_user=self.auth_user)
        try:
            queued = await self.queue.enqueue(
                tx.sender, tx.recipients, self._stored(results + scanned, data), origin, tx.smtputf8
            )
        except QueueFailure as err:
            return Step(replies.queue_failure(err.text, err.permanent)), None
        return Step(replies.accepted(queued.at, queued.qp)), queued

    def _checked(self) -> bool:
        """Whether the checks at the door apply: not to an authenticated client, a
        ``relayclients`` client or this host itself (docs/deliverability.md)."""
        if self._checks is None or self.auth_user is not None or self.relayclient is not None:
            return False
        address = client_address(self.client.ip)
        return address is None or str(address) not in UNCHECKED

    async def door(self, sender: str, message: AsyncIterable[bytes], size: int) -> bytes | Verdict:
        """SPF, DKIM, DMARC, ARC of one message (stored form, ``size`` bytes), for SMTP and
        QMTP alike: the refusal (``dmarcreject``), or the header lines to add (none for a
        client the checks do not apply to)."""
        if self._checks is None or not self._checked():
            return b""
        checked = await self._checks.check(
            ip=self.client.ip, helo=self.helo or "", sender=sender, message=message, size=size
        )
        refusal = decide(checked, dmarcreject=self.config.dmarcreject)
        if refusal is not None:
            return refusal
        return header_lines(
            checked,
            self.config.localname,
            sender=sender,
            helo=self.helo or "",
            dmarcreject=self.config.dmarcreject,
        )

    def _stored(self, head: bytes, data: DataReader) -> AsyncIterator[bytes]:
        """``head``, then the message without fields claiming our authserv-id."""
        return without_our_claims(head, data.body(b""), self.config.localname)

    async def _scan(self, tx: _Transaction, data: DataReader, trace: bytes) -> bytes | Verdict:
        """The content filter's refusal, or the head to store: ``trace`` and its X-Spam-*."""
        size = len(trace) + data.size
        return await self.content(tx.sender, tx.recipients, data.body(trace), size, trace)

    def _proto(self, smtputf8: bool) -> str:
        """SMTPD-58: RFC 3848 / RFC 6531 keywords."""
        if not self.extended:
            return "SMTP"
        suffix = ("S" if self.tls else "") + ("A" if self.auth_user else "")
        return ("UTF8SMTP" if smtputf8 else "ESMTP") + suffix

    # -- STARTTLS, AUTH ----------------------------------------------------------------------

    async def _starttls(self, arg: str) -> Step:
        if not self.client.tls_available:
            return Step(replies.UNIMPLEMENTED)
        if arg:
            return Step(replies.SYNTAX)
        if self.tls:
            return Step(replies.TLS_ACTIVE)
        return Step(replies.TLS_READY, start_tls=True)  # SMTPD-80

    async def _auth_command(self, arg: str) -> Step:
        if self._authenticator is None or not self.client.submission:
            return Step(replies.UNIMPLEMENTED)
        if not self.tls:
            return Step(replies.AUTH_NEEDS_TLS)  # SMTPD-81
        if self.auth_user is not None or self._tx is not None:
            return Step(replies.AUTH_NOT_NOW)
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in self.config.smtpauth or mechanism not in ("PLAIN", "LOGIN"):
            return Step(replies.AUTH_MECHANISM)
        if mechanism == "PLAIN":
            if initial:
                return await self._auth_plain(initial.encode())
            self._auth = "plain"
            return Step("334 ")
        if initial:
            return await self._auth_login_user(initial.encode())
        self._auth = "login-user"
        return Step("334 VXNlcm5hbWU6")  # "Username:"

    async def _auth_response(self, line: bytes, overlong: bool) -> Step:
        state, self._auth = self._auth, None
        response = line.rstrip(b"\r\n")
        if response == b"*":
            return Step(replies.AUTH_CANCELLED)
        if overlong:
            return Step(replies.AUTH_BASE64)
        if state == "plain":
            return await self._auth_plain(response)
        if state == "login-user":
            return await self._auth_login_user(response)
        try:
            password = base64.b64decode(response, validate=True)
        except binascii.Error:
            return Step(replies.AUTH_BASE64)
        return await self._verify(self._auth_login, password)

    async def _auth_plain(self, response: bytes) -> Step:
        try:
            fields = base64.b64decode(response, validate=True).split(b"\0")
        except binascii.Error:
            return Step(replies.AUTH_BASE64)
        if len(fields) != 3:
            return Step(replies.AUTH_BASE64)
        authzid, login, password = fields
        if authzid and authzid != login:
            return Step(replies.AUTH_FAILED)
        return await self._verify(login.decode("utf-8", "replace"), password)

    async def _auth_login_user(self, response: bytes) -> Step:
        try:
            self._auth_login = base64.b64decode(response, validate=True).decode("utf-8", "replace")
        except binascii.Error:
            return Step(replies.AUTH_BASE64)
        self._auth = "login-password"
        return Step("334 UGFzc3dvcmQ6")  # "Password:"

    async def _verify(self, login: str, password: bytes) -> Step:
        assert self._authenticator is not None
        try:
            who = await self._authenticator.authenticate(login, password.decode("utf-8", "replace"))
        except Temporary:
            return Step(replies.AUTH_TEMPORARY)
        except LoginBlocked:
            return Step(replies.AUTH_BLOCKED, close=True)
        if who is None:
            return Step(replies.AUTH_FAILED)  # the delay is the authenticator's (SMTPD-81)
        self.auth_user = who
        return Step(replies.AUTH_OK)


_COMMANDS = {
    "HELO": Session._helo,
    "EHLO": Session._ehlo,
    "MAIL": Session._mail,
    "RCPT": Session._rcpt,
    "DATA": Session._data,
    "RSET": Session._rset,
    "NOOP": Session._noop,
    "VRFY": Session._vrfy,
    "HELP": Session._help,
    "QUIT": Session._quit,
    "STARTTLS": Session._starttls,
    "AUTH": Session._auth_command,
}
