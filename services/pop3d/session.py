"""The POP3 state machine: qmail-popup, checkpassword and qmail-pop3d in one object.

A session takes one command line at a time and answers with a :class:`Step`: the bytes to send
and whether to close the connection or start TLS next. It touches the world only through the
ports it is given (:mod:`services.pop3d.ports`) and an awaitable ``sleep`` for the failure
delay, so the whole dialogue is unit-tested without sockets. States: authorization (section
11.1), a pending SASL response (POP3-42), transaction (section 11.2).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from qmesh.contract.errors import Temporary
from qmesh.directory.authenticate import Account
from services.pop3d.ports import (
    Authenticator,
    LoginBlocked,
    Maildrop,
    MaildropInUse,
    Maildrops,
    MessageGone,
    Recorder,
)
from services.pop3d.protocol import (
    MAX_COMMAND_LINE,
    MAX_SASL_LINE,
    Command,
    continuation,
    decode,
    err,
    listing,
    ok,
    parse_command,
    parse_number,
    strip_line_end,
    stuff,
    top,
)

log = logging.getLogger(__name__)

State = Literal["authorization", "sasl", "transaction", "closed"]

AUTH_FAILED = "[AUTH] authorization failed"
AUTH_TEMP = "[SYS/TEMP] temporary authentication failure"
AUTH_BLOCKED = "[SYS/TEMP] too many failed logins, try again later"
TLS_REQUIRED = "[AUTH] TLS required"
IN_USE = "[IN-USE] mailbox is locked by another session"
NOT_REMOVED = "[SYS/TEMP] some deleted messages were not removed"
BEFORE_LOGIN = frozenset({"USER", "PASS", "APOP", "QUIT", "NOOP", "CAPA", "STLS", "AUTH"})


@dataclass(frozen=True, slots=True)
class Policy:
    """What one connection may do, fixed when it is accepted."""

    hostname: str  # from ``me`` (POP3-01)
    plaintext: bool  # ``pop3plaintext`` (POP3-60)
    tls_available: bool  # ``tlscert`` and ``tlskey`` loaded (POP3-41)
    tls_active: bool = False  # implicit TLS (POP3-43)
    failure_delay: float = 1.0  # seconds before ``-ERR [AUTH]`` (POP3-04)
    max_failures: int = 3


@dataclass(frozen=True, slots=True)
class Step:
    reply: bytes
    close: bool = False
    start_tls: bool = False


class Session:
    def __init__(
        self,
        policy: Policy,
        authenticator: Authenticator,
        maildrops: Maildrops,
        recorder: Recorder,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._policy = policy
        self._auth = authenticator
        self._maildrops = maildrops
        self._recorder = recorder
        self._sleep = sleep
        self.state: State = "authorization"
        self.tls_active = policy.tls_active
        self._user: str | None = None
        self._failures = 0
        self._maildrop: Maildrop | None = None
        self._deleted: set[int] = set()

    def greeting(self) -> bytes:
        return ok(f"{self._policy.hostname} POP3 ready")

    def tls_started(self) -> None:
        """The STLS handshake finished: forget what was said in plaintext (RFC 2595)."""
        self.tls_active = True
        self._user = None

    async def close(self) -> None:
        """The connection ended: release the maildrop without changing it (POP3-22)."""
        self.state = "closed"
        if self._maildrop is not None:
            maildrop, self._maildrop = self._maildrop, None
            await maildrop.release()

    async def handle(self, line: bytes, *, overlong: bool = False) -> Step:
        """Answer one line (with its line end); ``overlong`` if the reader had to cut it."""
        if self.state == "sasl":
            return await self._sasl_response(line, overlong)
        is_auth = line[:5].upper() == b"AUTH "
        if overlong or len(line) > (MAX_SASL_LINE if is_auth else MAX_COMMAND_LINE):
            return Step(err("line too long"))
        command = parse_command(line)
        log.debug("pop3d.command", extra={"verb": command.verb[:16]})
        if self.state == "authorization":
            return await self._authorization(command)
        return await self._transaction(command)

    # -- authorization state (POP3-01..07, POP3-40..42, POP3-60) ---------------------------

    @property
    def _plaintext_ok(self) -> bool:
        return self._policy.plaintext or self.tls_active

    async def _authorization(self, command: Command) -> Step:
        verb, arg = command.verb, command.arg
        if verb not in BEFORE_LOGIN:
            return Step(err("authorization first"))
        if verb == "QUIT":
            return Step(ok(), close=True)
        if verb == "NOOP":
            return Step(ok())
        if verb == "CAPA":
            return Step(self._capabilities())
        if verb == "APOP":
            return Step(err("unimplemented"))  # POP3-06
        if verb == "STLS":
            return self._stls()
        if verb == "AUTH":
            return await self._auth_command(arg)
        if not self._plaintext_ok:
            return Step(err(TLS_REQUIRED))
        if verb == "USER":
            if not arg:
                return Step(err("syntax error"))
            self._user = arg
            return Step(ok())
        if self._user is None:
            return Step(err("USER first"))
        if not arg:
            return Step(err("syntax error"))
        user, self._user = self._user, None
        return await self._login(user, arg)

    def _capabilities(self) -> bytes:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state == "authorization":
            if self._plaintext_ok:
                caps += ["USER", "SASL PLAIN"]
            if self._policy.tls_available and not self.tls_active:
                caps.append("STLS")
        caps += ["EXPIRE NEVER", "LOGIN-DELAY 0", "IMPLEMENTATION qmesh"]
        return listing(ok("capability list follows"), caps)

    def _stls(self) -> Step:
        if self.tls_active:
            return Step(err("TLS already active"))
        if not self._policy.tls_available:
            return Step(err("TLS not available"))
        return Step(ok("Begin TLS negotiation"), start_tls=True)

    async def _auth_command(self, arg: str) -> Step:
        mechanism, _, initial = arg.partition(" ")
        if not mechanism:
            return Step(err("syntax error"))
        if mechanism.upper() != "PLAIN":
            return Step(err("unrecognized authentication type"))
        if not self._plaintext_ok:
            return Step(err(TLS_REQUIRED))
        initial = initial.strip(" ")
        if not initial:
            self.state = "sasl"
            return Step(continuation())
        return await self._plain("" if initial == "=" else initial)

    async def _sasl_response(self, line: bytes, overlong: bool) -> Step:
        self.state = "authorization"
        if overlong or len(line) > MAX_SASL_LINE:
            return Step(err("line too long"))
        return await self._plain(decode(strip_line_end(line)).strip(" "))

    async def _plain(self, response: str) -> Step:
        """An RFC 4616 PLAIN response, base64 (POP3-42)."""
        if response == "*":
            return Step(err("authentication cancelled"))
        try:
            raw = base64.b64decode(response.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            return Step(err("invalid base64 encoding"))
        parts = raw.split(b"\0")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            return await self._failed()
        authzid, authcid, password = (p.decode("utf-8", "surrogateescape") for p in parts)
        if authzid and authzid != authcid:
            return Step(err("[AUTH] authorization identity must be the login name"))
        return await self._login(authcid, password)

    async def _login(self, name: str, password: str) -> Step:
        try:
            account = await self._auth.authenticate(name, password)
        except Temporary as error:
            self._recorder.login("tempfail")
            log.warning("pop3d.login", extra={"outcome": "tempfail", "reason": error.text})
            return Step(err(AUTH_TEMP))
        except LoginBlocked:
            self._recorder.login("blocked")
            return Step(err(AUTH_BLOCKED), close=True)
        if account is None:
            return await self._failed()
        return await self._open(account)

    async def _failed(self) -> Step:
        self._failures += 1
        self._recorder.login("failed")
        log.info("pop3d.login", extra={"outcome": "failed", "attempt": self._failures})
        await self._sleep(self._policy.failure_delay)
        return Step(err(AUTH_FAILED), close=self._failures >= self._policy.max_failures)

    async def _open(self, account: Account) -> Step:
        try:
            maildrop = await self._maildrops.open(account)
        except MaildropInUse:
            self._recorder.login("in-use")
            log.info("pop3d.login", extra={"outcome": "in-use", "account": str(account)})
            return Step(err(IN_USE), close=True)
        except Temporary as error:
            self._recorder.login("tempfail")
            log.warning(
                "pop3d.login",
                extra={"outcome": "tempfail", "account": str(account), "reason": error.text},
            )
            return Step(err("[SYS/TEMP] unable to open the mailbox"), close=True)
        self._maildrop = maildrop
        self.state = "transaction"
        self._recorder.login("ok")
        log.info(
            "pop3d.login",
            extra={"outcome": "ok", "account": str(account), "messages": len(maildrop.messages)},
        )
        return Step(ok())

    # -- transaction state (POP3-10..POP3-23) ----------------------------------------------

    async def _transaction(self, command: Command) -> Step:
        assert self._maildrop is not None
        verb, arg = command.verb, command.arg.rstrip(" ")
        drop = self._maildrop
        live = [i for i in range(len(drop.messages)) if i not in self._deleted]
        if verb == "STAT":
            return Step(ok(f"{len(live)} {sum(drop.messages[i].size for i in live)}"))
        if verb in ("LIST", "UIDL"):

            def item(i: int) -> str:
                m = drop.messages[i]
                return f"{i + 1} {m.size if verb == 'LIST' else m.unique}"

            if not arg:
                return Step(listing(ok(), [item(i) for i in live]))
            index = self._number(arg)
            return Step(index) if isinstance(index, bytes) else Step(ok(item(index)))
        if verb in ("RETR", "TOP"):
            return await self._retrieve(verb, arg)
        if verb == "DELE":
            index = self._number(arg)
            if isinstance(index, bytes):
                return Step(index)
            self._deleted.add(index)
            return Step(ok())
        if verb == "RSET":
            self._deleted.clear()
            return Step(ok())
        if verb == "NOOP":
            return Step(ok())
        if verb == "LAST":
            return Step(ok(str(max(self._deleted) + 1 if self._deleted else 0)))
        if verb == "CAPA":
            return Step(self._capabilities())
        if verb == "QUIT":
            return await self._quit(drop)
        return Step(err("unimplemented"))

    def _number(self, arg: str) -> int | bytes:
        """The 0-based index for a message-number argument, or the error reply (POP3-18)."""
        assert self._maildrop is not None
        n = parse_number(arg)
        if n is None:
            return err("syntax error")
        if n == 0:
            return err("messages are counted from 1")
        if n > len(self._maildrop.messages):
            return err("not that many messages")
        if n - 1 in self._deleted:
            return err("already deleted")
        return n - 1

    async def _retrieve(self, verb: str, arg: str) -> Step:
        assert self._maildrop is not None
        lines = 0
        if verb == "TOP":
            parts = arg.split()
            count = parse_number(parts[1]) if len(parts) == 2 else None
            if count is None:
                return Step(err("syntax error"))
            arg, lines = parts[0], count
        index = self._number(arg)
        if isinstance(index, bytes):
            return Step(index)
        try:
            content = await self._maildrop.retrieve(index)
        except MessageGone:
            return Step(err("[SYS/PERM] message no longer exists"))
        except Temporary as error:
            log.warning("pop3d.retrieve_failed", extra={"reason": error.text})
            return Step(err("[SYS/TEMP] unable to read the message"))
        if verb == "RETR":
            self._recorder.retrieved()
            return Step(ok() + stuff(content))
        return Step(ok() + stuff(top(content, lines)))

    async def _quit(self, drop: Maildrop) -> Step:
        deleted = frozenset(self._deleted)
        try:
            failed = await drop.update(deleted)
        except Temporary as error:
            log.warning("pop3d.update_failed", extra={"reason": error.text})
            failed = len(deleted)
        self._recorder.deleted(len(deleted) - failed)
        log.info("pop3d.update", extra={"deleted": len(deleted) - failed, "not_removed": failed})
        await self.close()
        return Step(err(NOT_REMOVED) if failed else ok(), close=True)
