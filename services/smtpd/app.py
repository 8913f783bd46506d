"""smtpd's composition root: controls, NATS (in the background), the queue store, listeners.

smtpd stays ready through a NATS or S3 outage and answers 451 instead (ARCHITECTURE 7), so its
readiness checks are only its own: controls loaded, listeners serving.
"""

from __future__ import annotations

import logging
import os
import socket

from qmesh.bus.connection import NatsConnection, NotConnected
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.control import Controls, ControlWatcher
from qmesh.control.derived import Derived, ignore_change
from qmesh.directory.authenticate import DirectoryAuthenticator
from qmesh.directory.domains import DirectoryDomains
from qmesh.directory.namespaces import Namespaces
from qmesh.directory.store import Directory
from qmesh.dns.resolver import async_resolver, sync_resolver
from qmesh.limits import limits_from
from qmesh.limits.anvil import Anvil
from qmesh.limits.logins import Throttle
from qmesh.runtime.service import Service
from qmesh.runtime.settings import Settings
from qmesh.runtime.tls import TlsContexts
from qmesh.store.factory import open_store
from services.smtpd.authcheck import PER_LOOKUP, DoorChecks
from services.smtpd.config import smtpd_config
from services.smtpd.dnsbl import LIFETIME as DNSBL_LIFETIME
from services.smtpd.dnsbl import DnsBlocklists
from services.smtpd.enqueuer import Enqueuer
from services.smtpd.login import SmtpLogin
from services.smtpd.rcptcheck import NatsRecipientCheck
from services.smtpd.rspamd import RspamdScanner
from services.smtpd.server import SmtpServer
from services.smtpd.session import Client, Session

log = logging.getLogger(__name__)

PUBLIC_PORTS = {"smtp": 25, "submission": 587, "smtps": 465}  # as clients see the listeners


def interface_addresses() -> frozenset[str]:
    """This host's addresses as far as it can tell (SMTPD-41 without control/ipme)."""
    found = {"127.0.0.1", "::1"}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    except OSError:
        pass
    return frozenset(found)


def namespaces(c: Controls) -> Namespaces:
    return Namespaces.build(c.canonical_local_domain(), c.locals, c.virtualdomains)


async def build(settings: Settings) -> Service:
    watcher = ControlWatcher(settings.control, os.environ, on_change=ignore_change)
    interfaces = interface_addresses()
    config = Derived(watcher, lambda c: smtpd_config(c, interfaces))  # SMTPD-01 at startup
    if watcher.current.rcpthosts is None:
        log.warning("smtpd.no_rcpthosts", extra={"relay": "hosted domains only (SMTPD-42)"})
    conn = NatsConnection(
        settings,
        "smtpd",
        streams=(subjects.STREAM_TODO,),
        kv_buckets=(subjects.KV_DIRECTORY, subjects.KV_LIMITS),
        background=True,
    )
    domains = DirectoryDomains(conn)
    queue = Enqueuer(open_store(settings, settings.queue_bucket), conn)
    rcptcheck = NatsRecipientCheck(conn)
    scanner = RspamdScanner()
    blocklists = DnsBlocklists(async_resolver(settings.dns_servers, lifetime=DNSBL_LIFETIME))
    checks = DoorChecks(sync_resolver(settings.dns_servers, lifetime=PER_LOOKUP))

    def directory() -> Directory:
        try:
            return Directory(conn.kv(subjects.KV_DIRECTORY))
        except NotConnected as err:
            raise Temporary("Unable to read the directory. (#4.3.0)") from err

    anvil = Anvil(lambda: conn.kv(subjects.KV_LIMITS), "smtpd", Derived(watcher, limits_from))
    login = SmtpLogin(
        DirectoryAuthenticator(directory, Derived(watcher, namespaces)), Throttle(anvil, "smtpd")
    )
    tls = TlsContexts(lambda: watcher.current)
    ports = {
        "smtp": settings.smtp_port,
        "submission": settings.submission_port,
        "smtps": settings.smtps_port,
        "qmtp": settings.qmtp_port,
    }

    def session(client: Client) -> Session:
        return Session(
            config(),
            client,
            queue=queue,
            rcptcheck=rcptcheck,
            domains=lambda: domains.names,
            authenticator=login.bound(client.ip),
            limiter=anvil,
            scanner=scanner,
            blocklists=blocklists,
            checks=checks,
        )

    server = SmtpServer(
        host=settings.listen_host,
        ports=ports,
        sessions=session,
        tls=tls.current,
        submission=frozenset(
            name for name, port in PUBLIC_PORTS.items() if port in watcher.current.submissionports
        ),
        implicit_tls=frozenset({"smtps"}),
        qmtp=frozenset({"qmtp"}),
        timeout=lambda: config().timeout,
        greeting=lambda: config().greeting,
        proxyclients=lambda: watcher.current.proxyclients,
        max_sessions=settings.max_sessions,
        maxconnip=lambda: watcher.current.maxconnip,
        anvil=anvil,
    )

    async def controls_loaded() -> None:
        config()  # loaded at construction; a bad file never replaces good values

    readiness = {"controls": controls_loaded, "listeners": server.check}
    return Service("smtpd", [watcher, conn, anvil, domains, scanner, checks, server], readiness)
