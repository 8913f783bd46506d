"""smtpd's composition root: controls, NATS (in the background), the queue store, listeners.

smtpd stays ready through a NATS or S3 outage and answers 451 instead (ARCHITECTURE 7), so its
readiness checks are only its own: controls loaded, listeners serving.
"""

from __future__ import annotations

import logging
import os

from qmesh.bus.connection import NatsConnection
from qmesh.contract import subjects
from qmesh.control import ControlError, Controls, ControlWatcher
from qmesh.control.derived import Derived, ignore_change
from qmesh.directory.domains import DirectoryDomains
from qmesh.routing.classify import RoutingRules
from qmesh.runtime.service import Service
from qmesh.runtime.settings import Settings
from qmesh.store.factory import open_store
from services.smtpd.handler import SmtpdConfig, SmtpHandler
from services.smtpd.listener import SmtpListener
from services.smtpd.policy import RelayPolicy

log = logging.getLogger(__name__)


def smtpd_config(c: Controls) -> SmtpdConfig:
    """What smtpd takes from the control files; a missing greeting stops startup (SMTPD-01)."""
    greeting = c.smtpgreeting or c.me
    if not greeting:
        raise ControlError("smtpgreeting", "neither control/smtpgreeting nor control/me exists")
    return SmtpdConfig(
        greeting=greeting,
        localname=c.me or greeting.split()[0],
        relay=RelayPolicy(
            rcpthosts=c.rcpthosts,
            morercpthosts=c.morercpthosts,
            rules=RoutingRules.from_controls(c),
        ),
        relayclients=c.relayclients,
        databytes=c.databytes,
    )


async def build(settings: Settings) -> Service:
    watcher = ControlWatcher(settings.control, os.environ, on_change=ignore_change)
    config = Derived(watcher, smtpd_config)  # a bad control stops startup (SMTPD-01)
    timeout = Derived(watcher, lambda c: float(max(1, c.timeoutsmtpd)))
    if watcher.current.rcpthosts is None:
        log.warning("smtpd.no_rcpthosts", extra={"relay": "hosted domains only (SMTPD-42)"})
    conn = NatsConnection(settings, "smtpd", kv_buckets=(subjects.KV_DIRECTORY,), background=True)
    blobs = open_store(settings, settings.queue_bucket)
    domains = DirectoryDomains(conn)
    handler = SmtpHandler(blobs=blobs, bus=conn, config=config, domains=domains)
    listeners = [
        SmtpListener(
            name=name,
            handler=handler,
            config=config,
            host=settings.listen_host,
            port=port,
            timeout=timeout,
        )
        for name, port in (("smtp", settings.smtp_port), ("submission", settings.submission_port))
    ]
    checks = {f"listener-{x.name}": x.check for x in listeners}
    return Service("smtpd", [watcher, conn, domains, *listeners], checks)
