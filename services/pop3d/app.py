"""pop3d's composition root: controls, NATS (in the background), the mail store, listeners.

pop3d stays ready through a NATS or S3 outage and answers ``-ERR [SYS/TEMP]`` instead
(ARCHITECTURE 7), so its readiness checks are only its own: controls loaded, listeners bound.
"""

from __future__ import annotations

import logging
import os

from qmesh.bus.connection import NatsConnection, NotConnected
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.control import ControlError, Controls, ControlWatcher
from qmesh.control.derived import Derived, ignore_change
from qmesh.directory.authenticate import Account, DirectoryAuthenticator
from qmesh.directory.namespaces import Namespaces
from qmesh.directory.store import Directory
from qmesh.limits import limits_from
from qmesh.limits.anvil import Anvil
from qmesh.limits.logins import Throttle
from qmesh.mailbox.announce import announce_change
from qmesh.mailbox.sync import AccountMailbox
from qmesh.mailbox.versioned import NatsVersioned
from qmesh.runtime.service import Service
from qmesh.runtime.settings import Settings
from qmesh.runtime.tls import TlsContexts
from qmesh.store.factory import open_store
from services.pop3d.lease import KvLeases
from services.pop3d.login import ThrottledLogin
from services.pop3d.mailbox import StoreMaildrops
from services.pop3d.metrics import PrometheusRecorder
from services.pop3d.server import IDLE_TIMEOUT, Pop3Server
from services.pop3d.session import Policy, Session

log = logging.getLogger(__name__)


def hostname(c: Controls) -> str:
    """The greeting's host name (POP3-01); without ``me`` pop3d does not start."""
    if not c.me:
        raise ControlError("me", "pop3d needs control/me for its greeting (POP3-01)")
    return c.me


def namespaces(c: Controls) -> Namespaces:
    return Namespaces.build(c.canonical_local_domain(), c.locals, c.virtualdomains)


async def build(settings: Settings, *, idle_timeout: float = IDLE_TIMEOUT) -> Service:
    watcher = ControlWatcher(settings.control, os.environ, on_change=ignore_change)
    greeting_host = Derived(watcher, hostname)
    conn = NatsConnection(
        settings,
        "pop3d",
        kv_buckets=(
            subjects.KV_DIRECTORY,
            subjects.KV_LEASES,
            subjects.KV_LIMITS,
            subjects.KV_MAILBOX,  # a DELE is an IMAP expunge (#13)
        ),
        background=True,
    )

    def directory() -> Directory:
        try:
            return Directory(conn.kv(subjects.KV_DIRECTORY))
        except NotConnected as err:
            raise Temporary("Unable to read the directory. (#4.3.0)") from err

    authenticator = DirectoryAuthenticator(directory, Derived(watcher, namespaces))
    anvil = Anvil(lambda: conn.kv(subjects.KV_LIMITS), "pop3d", Derived(watcher, limits_from))
    throttle = Throttle(anvil, "pop3d")
    mail = open_store(settings, settings.mail_bucket)

    def mailbox(account: Account) -> AccountMailbox:
        """The account in the mailbox model, for the expunge at QUIT (#13)."""
        try:
            state = NatsVersioned(conn.kv(subjects.KV_MAILBOX))
        except NotConnected as err:
            raise Temporary("Unable to write the mailbox index. (#4.3.0)") from err

        async def announce() -> None:
            await announce_change(conn, account.domain, account.name)

        return AccountMailbox(mail, state, account.domain, account.name, announce=announce)

    maildrops = StoreMaildrops(mail, KvLeases(lambda: conn.kv(subjects.KV_LEASES)), mailbox=mailbox)
    recorder = PrometheusRecorder()
    tls = TlsContexts(lambda: watcher.current)
    if not watcher.current.pop3plaintext and watcher.current.tlscert is None:
        log.warning("pop3d.no_login_possible", extra={"reason": "no TLS and pop3plaintext 0"})

    def policy(tls_available: bool, implicit_tls: bool) -> Policy:
        return Policy(
            hostname=greeting_host(),
            plaintext=watcher.current.pop3plaintext,
            tls_available=tls_available,
            tls_active=implicit_tls,
            failure_delay=0.0,  # the throttle's delay, which grows with the failures
        )

    server = Pop3Server(
        host=settings.listen_host,
        ports={"pop3": settings.pop3_port, "pop3s": settings.pop3s_port},
        sessions=lambda p, remote: Session(
            p, ThrottledLogin(authenticator, throttle, remote), maildrops, recorder
        ),
        policy=policy,
        tls=tls.current,
        proxyclients=lambda: watcher.current.proxyclients,
        max_sessions=settings.max_sessions,
        maxconnip=lambda: watcher.current.maxconnip,
        idle_timeout=idle_timeout,
        anvil=anvil,
    )

    async def controls_loaded() -> None:
        greeting_host()  # loaded at construction; a bad file never replaces good values

    checks = {"controls": controls_loaded, "listeners": server.check}
    return Service("pop3d", [watcher, conn, anvil, server], checks)
