"""webmail's composition root: controls, NATS, the stores, sessions, and the pages (issue 14).

webmail is sqwebmail for the cluster: one account's mailbox, after that account logs in. Its
NATS user may read the directory (passwords, as pop3d), write account records (its password),
use the mailbox model (``qmesh_mailbox``), its own session bucket ``qmesh_mailsessions``, the
failed-login counts in ``qmesh_limits``, and publish to the todo stream for what it sends. Its
pages and ``/healthz``, ``/readyz``, ``/metrics`` are one app on ``QMESH_HTTP_PORT`` (``qmesh
up`` sets it from ``QMESH_WEBMAIL_PORT``).
"""

from __future__ import annotations

import os

from qmesh.bus.connection import NatsConnection, NotConnected
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.control import Controls, ControlWatcher
from qmesh.control.derived import Derived, ignore_change
from qmesh.directory.authenticate import DirectoryAuthenticator
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
from qmesh.store.factory import open_store
from qmesh.web.sessions import Sessions
from services.webmail.send import Sender
from services.webmail.web import Ports, routes

NATS_ROLE = "webmail"
UNREADABLE = "Unable to reach the mailbox (NATS)."


def namespaces(c: Controls) -> Namespaces:
    return Namespaces.build(c.canonical_local_domain(), c.locals, c.virtualdomains)


async def build(settings: Settings) -> Service:
    watcher = ControlWatcher(settings.control, os.environ, on_change=ignore_change)
    conn = NatsConnection(
        settings,
        NATS_ROLE,
        streams=(subjects.STREAM_TODO,),
        kv_buckets=(
            subjects.KV_DIRECTORY,
            subjects.KV_MAILBOX,
            subjects.KV_LIMITS,
            subjects.KV_MAILSESSIONS,
        ),
        background=True,
    )

    def directory() -> Directory:
        try:
            return Directory(conn.kv(subjects.KV_DIRECTORY))
        except NotConnected as err:
            raise Temporary("Unable to reach the directory (NATS).") from err

    mail = open_store(settings, settings.mail_bucket)
    queue = open_store(settings, settings.queue_bucket)

    def mailbox(domain: str, account: str) -> AccountMailbox:
        try:
            state = NatsVersioned(conn.kv(subjects.KV_MAILBOX))
        except NotConnected as err:
            raise Temporary(UNREADABLE) from err

        async def announce() -> None:
            await announce_change(conn, domain, account)

        return AccountMailbox(mail, state, domain, account, announce=announce)

    ns = Derived(watcher, namespaces)
    anvil = Anvil(lambda: conn.kv(subjects.KV_LIMITS), "webmail", Derived(watcher, limits_from))
    ports = Ports(
        directory=directory,
        mailbox=mailbox,
        sessions=Sessions(lambda: conn.kv(subjects.KV_MAILSESSIONS)),
        authenticator=DirectoryAuthenticator(directory, ns),
        throttle=Throttle(anvil, "webmail"),
        sender=Sender(queue, conn),
        controls=lambda: watcher.current,
    )
    return Service("webmail", [watcher, conn, anvil], {"nats": conn.check}, http=routes(ports))
