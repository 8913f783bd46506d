"""imapd's composition root: controls, NATS (in the background), the mailbox model, listeners.

Like pop3d, imapd stays ready through a NATS or S3 outage and answers ``NO [UNAVAILABLE]``
instead; its readiness checks are its own: controls loaded, listeners bound.
"""

from __future__ import annotations

import logging
import os

from pymap.concurrent import Subsystem

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
from qmesh.mailbox.sync import AccountMailbox, IndexCache
from qmesh.mailbox.versioned import NatsVersioned, Versioned
from qmesh.runtime.service import Service
from qmesh.runtime.settings import Settings
from qmesh.runtime.tls import TlsContexts
from qmesh.store.factory import open_store
from services.imapd.announcements import Announcements
from services.imapd.backend import Folders, SelectedSets
from services.imapd.config import ImapConfig
from services.imapd.login import DirectoryLogin
from services.imapd.metrics import PrometheusRecorder
from services.imapd.server import IDLE_TIMEOUT, ImapServer, Listener

log = logging.getLogger(__name__)
UNREADABLE = "Unable to read the mailbox index. (#4.3.0)"


def hostname(c: Controls) -> str:
    if not c.me:
        raise ControlError("me", "imapd needs control/me for its greeting")
    return c.me


def namespaces(c: Controls) -> Namespaces:
    return Namespaces.build(c.canonical_local_domain(), c.locals, c.virtualdomains)


class LazyVersioned:
    """:class:`Versioned` on the KV bucket once NATS is up; ``Temporary`` until then."""

    def __init__(self, conn: NatsConnection) -> None:
        self._conn = conn

    def _kv(self) -> Versioned:
        try:
            return NatsVersioned(self._conn.kv(subjects.KV_MAILBOX))
        except NotConnected as err:
            raise Temporary(UNREADABLE) from err

    async def read(self, key: str) -> tuple[bytes, int] | None:
        return await self._kv().read(key)

    async def create(self, key: str, value: bytes) -> int:
        return await self._kv().create(key, value)

    async def replace(self, key: str, value: bytes, revision: int) -> int:
        return await self._kv().replace(key, value, revision)

    async def remove(self, key: str) -> None:
        await self._kv().remove(key)


async def build(settings: Settings, *, idle_timeout: float = IDLE_TIMEOUT) -> Service:
    watcher = ControlWatcher(settings.control, os.environ, on_change=ignore_change)
    greeting_host = Derived(watcher, hostname)
    conn = NatsConnection(
        settings,
        "imapd",
        kv_buckets=(subjects.KV_DIRECTORY, subjects.KV_MAILBOX, subjects.KV_LIMITS),
        background=True,
    )

    def directory() -> Directory:
        try:
            return Directory(conn.kv(subjects.KV_DIRECTORY))
        except NotConnected as err:
            raise Temporary("Unable to read the directory. (#4.3.0)") from err

    authenticator = DirectoryAuthenticator(directory, Derived(watcher, namespaces))
    # failed logins counted across the cluster, as pop3d's (defences #12)
    anvil = Anvil(lambda: conn.kv(subjects.KV_LIMITS), "imapd", Derived(watcher, limits_from))
    throttle = Throttle(anvil, "imapd")
    blobs = open_store(settings, settings.mail_bucket)
    state = LazyVersioned(conn)
    announcements = Announcements(lambda: conn.nc, conn.ready)
    sets = SelectedSets()
    indexes = IndexCache()  # decoded once per revision for every session of the replica
    recorder = PrometheusRecorder()
    tls = TlsContexts(lambda: watcher.current)
    cpu = Subsystem.for_asyncio()

    def folders(account: Account) -> Folders:
        async def announce() -> None:
            await announce_change(conn, account.domain, account.name)

        async def limit() -> int | None:  # LOCAL-33: the directory's quota, read each time
            record = await directory().get_account(account.domain, account.name)
            return record.quota if record is not None else None

        box = AccountMailbox(
            blobs, state, account.domain, account.name, announce=announce, indexes=indexes
        )
        return Folders(
            box,
            lambda event: announcements.register(account.domain, account.name, event),
            sets,
            limit,
        )

    def config(listener: Listener, remote: str) -> ImapConfig:
        return ImapConfig(
            hostname=greeting_host(),
            tls=tls.current(),
            implicit_tls=listener == "imaps",
            plaintext=watcher.current.pop3plaintext,
            cpu=cpu,
        )

    server = ImapServer(
        host=settings.listen_host,
        ports={"imap": settings.imap_port, "imaps": settings.imaps_port},
        configs=config,
        logins=lambda c, remote: DirectoryLogin(
            authenticator, folders, c, recorder, throttle, remote
        ),
        tls=tls.current,
        proxyclients=lambda: watcher.current.proxyclients,
        max_sessions=settings.max_sessions,
        maxconnip=lambda: watcher.current.maxconnip,
        idle_timeout=idle_timeout,
    )

    async def controls_loaded() -> None:
        greeting_host()

    checks = {"controls": controls_loaded, "listeners": server.check}
    return Service("imapd", [watcher, conn, anvil, announcements, server], checks)
