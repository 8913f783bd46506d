"""The cluster-wide limits on JetStream KV (Postfix's anvil, but shared by every replica).

Each check is one compare-and-set on one key of the ``qmesh_limits`` bucket (a get and an
update, retried on a concurrent write), so a limit of N admits N in total however many
replicas count. What it costs on the hot path:

- a connection: one CAS on its address's key and one on its network's, in parallel, when it
  opens; the release when it closes runs in the background and never delays the client;
- a message (only when ``clientmessages`` is set): one CAS, started when DATA begins and
  awaited at its end, so it overlaps the upload of the body; a recipient (only when
  ``clientrecipients`` is set): one CAS at RCPT (QMTP counts both at once, per package);
- a login: two reads before the password is checked; after a failure, two CASes (the reply
  waits for its delay anyway).

A bucket that cannot be reached never refuses anyone: the check allows, logs
``limits.unavailable`` once per outage, and counts it (the service's own outage handling
decides what the client hears). The rules themselves are in :mod:`qmesh.limits.rules`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.limits import rules
from qmesh.limits.rules import Change, Limits

log = logging.getLogger(__name__)

TIMEOUT = 1.0  # seconds one check may take before it allows
ATTEMPTS = 8  # compare-and-set attempts under contention
RELEASE_PATIENCE = 120.0  # seconds a release keeps trying through contention or an outage

Rule = Callable[[bytes | None], Change]


class Unavailable(Exception):
    """The limits bucket did not answer in time, or too many writers raced for one key."""


@dataclass(slots=True)
class Admission:
    """An open connection's places in the connection counts (release them at the end)."""

    allowed: bool
    scope: str = ""  # what refused it: "client" or "net"
    count: int = 0
    keys: list[str] = field(default_factory=list)
    token: str = ""


class Anvil:
    """Limit checks for one service against the ``qmesh_limits`` bucket."""

    def __init__(
        self,
        kv: Callable[[], KeyValue],
        service: str,
        limits: Callable[[], Limits],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = TIMEOUT,
    ) -> None:
        self._kv = kv
        self._service = service
        self._limits = limits
        self._clock = clock
        self._timeout = timeout
        self._background: set[asyncio.Task[None]] = set()
        self._down = False

    @property
    def limits(self) -> Limits:
        return self._limits()

    # -- the compare-and-set ---------------------------------------------------------------

    async def _cas(self, key: str, rule: Rule) -> Change:
        try:
            async with asyncio.timeout(self._timeout):
                change = await self._cas_once(key, rule)
        except Unavailable:
            raise
        except Exception as err:  # not connected, no bucket, timeout, server error
            raise Unavailable(type(err).__name__) from err
        if self._down:
            self._down = False
            log.info("limits.available", extra={"service": self._service})
        return change

    async def _cas_once(self, key: str, rule: Rule) -> Change:
        kv = self._kv()
        for _ in range(ATTEMPTS):
            try:
                entry = await kv.get(key)
                raw, revision = entry.value, entry.revision
            except (KeyNotFoundError, KeyDeletedError):
                raw, revision = None, None
            change = rule(raw)
            if change.record is None:
                return change
            try:
                if revision is None:
                    await kv.create(key, change.record)
                else:
                    await kv.update(key, change.record, last=revision)
            except KeyWrongLastSequenceError:
                # another writer was first: judge again with its value, after a short random
                # pause so that writers racing for one key stop colliding in step
                await asyncio.sleep(random.uniform(0.0, 0.002))
                continue
            return change
        raise Unavailable("contended")

    async def _read(self, key: str) -> bytes | None:
        try:
            async with asyncio.timeout(self._timeout):
                return (await self._kv().get(key)).value
        except (KeyNotFoundError, KeyDeletedError):
            return None
        except Exception as err:
            raise Unavailable(type(err).__name__) from err

    def _unavailable(self, check: str, err: Unavailable) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "limits.unavailable",
                extra={"service": self._service, "check": check, "reason": str(err)},
            )

    def _later(self, work: Coroutine[object, object, object]) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await work

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- connections -----------------------------------------------------------------------

    async def admit(self, remote: str, lifetime: float) -> Admission:
        """Count a new connection from ``remote``, which will end within ``lifetime`` seconds."""
        limits = self._limits()
        scopes = [
            (scope, limit, token)
            for (scope, limit), token in zip(
                (("client", limits.client_connections), ("net", limits.net_connections)),
                rules.client_keys(remote),
                strict=True,
            )
            if limit
        ]
        if not scopes:
            return Admission(True)
        token = secrets.token_hex(8)
        now = self._clock()
        deadline = now + lifetime + 60.0
        keys = [rules.connection_key(self._service, scope, t) for scope, _, t in scopes]
        outcomes = await asyncio.gather(
            *(
                self._cas(
                    key,
                    partial(
                        rules.open_connection, token=token, deadline=deadline, now=now, limit=limit
                    ),
                )
                for key, (_, limit, _) in zip(keys, scopes, strict=True)
            ),
            return_exceptions=True,
        )
        admission = Admission(True, token=token)
        for key, (scope, _, _), outcome in zip(keys, scopes, outcomes, strict=True):
            if isinstance(outcome, Unavailable):
                self._unavailable("connections", outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            elif outcome.allowed:
                admission.keys.append(key)
            elif admission.allowed:
                admission.allowed, admission.scope, admission.count = False, scope, outcome.count
        if not admission.allowed:  # give back the place it took in the other count, now
            keys, admission.keys = admission.keys, []
            closing = partial(self._close, token=token)
            await asyncio.gather(*(self._cas(k, closing) for k in keys), return_exceptions=True)
        return admission

    def release(self, admission: Admission) -> None:
        """Give the connection's places back, in the background."""
        keys, admission.keys = admission.keys, []
        for key in keys:
            self._later(self._release(key, admission.token))

    async def _release(self, key: str, token: str) -> None:
        """One place given back, tried again until it is: a release lost to contention (many
        short connections from one address) would otherwise hold its place until its deadline,
        the session's lifetime, and the address would be refused for connections it no longer
        has."""
        give_up = time.monotonic() + RELEASE_PATIENCE
        pause = 0.005
        while True:
            try:
                await self._cas(key, partial(self._close, token=token))
                return
            except Unavailable as err:
                if time.monotonic() > give_up:
                    self._unavailable("connections", err)
                    return
            await asyncio.sleep(pause * random.uniform(1.0, 2.0))
            pause = min(pause * 2, 1.0)

    def _close(self, raw: bytes | None, *, token: str) -> Change:
        return rules.close_connection(raw, token, self._clock())

    # -- messages and recipients -----------------------------------------------------------

    def charges(self) -> bool:
        limits = self._limits()
        return bool(limits.client_messages or limits.client_recipients)

    async def charge(self, remote: str, recipients: int, *, messages: int = 1) -> bool:
        """Count ``messages`` messages with ``recipients`` recipients; ``False``: over this
        minute's ``clientmessages`` or ``clientrecipients``."""
        limits = self._limits()
        if not (limits.client_messages or limits.client_recipients):
            return True
        client, _ = rules.client_keys(remote)
        key = rules.rate_key(client, self._clock())
        try:
            change = await self._cas(
                key, lambda raw: rules.charge_rate(raw, messages, recipients, limits)
            )
        except Unavailable as err:
            self._unavailable("messages", err)
            return True
        return change.allowed

    # -- failed logins ---------------------------------------------------------------------

    async def login_failures(self, remote: str, login: str) -> tuple[int, int]:
        """The failures remembered for the client and for the login name."""
        limits = self._limits()
        client, _ = rules.client_keys(remote)
        now = self._clock()
        try:
            raw = await asyncio.gather(
                self._read(rules.client_failure_key(client)),
                self._read(rules.login_failure_key(login)),
            )
        except Unavailable as err:
            self._unavailable("logins", err)
            return 0, 0
        return rules.failures(raw[0], now, limits), rules.failures(raw[1], now, limits)

    async def blocked(self, remote: str, login: str) -> bool:
        client, name = await self.login_failures(remote, login)
        return rules.login_blocked(client, name, self._limits())

    async def failed(self, remote: str, login: str) -> int:
        """Count a failed login; the client's failures now (for the delay)."""
        limits = self._limits()
        client, _ = rules.client_keys(remote)
        now = self._clock()
        outcomes = await asyncio.gather(
            self._cas(
                rules.client_failure_key(client), lambda r: rules.add_failure(r, now, limits)
            ),
            self._cas(rules.login_failure_key(login), lambda r: rules.add_failure(r, now, limits)),
            return_exceptions=True,
        )
        count = 1
        for outcome in outcomes:
            if isinstance(outcome, Unavailable):
                self._unavailable("logins", outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        first = outcomes[0]
        if isinstance(first, Change):
            count = first.count
        return count

    async def start(self) -> None:
        """A service component: nothing to start; :meth:`stop` lets releases finish."""

    async def stop(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=2.0)
