"""remote's composition root: controls, NATS, the queue store, DNS, the job consumer."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Mapping

import dns.asyncresolver

from qmesh.bus.connection import NatsConnection
from qmesh.bus.consumer import Consumer
from qmesh.bus.ledger import Ledger
from qmesh.contract import subjects
from qmesh.contract.events import RemoteJob
from qmesh.control.values import Controls
from qmesh.control.watch import ControlWatcher
from qmesh.dkim.keyring import Keys
from qmesh.dns.resolver import async_resolver
from qmesh.runtime.service import Service
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobStore
from qmesh.store.factory import open_store
from services.remote import metrics
from services.remote.consumer import RemoteDelivery, batch_key
from services.remote.routes import SMTP_PORT
from services.remote.sealing import Sealer
from services.remote.signing import Signer
from services.remote.tcpto import SharedTimeouts
from services.remote.tlspolicy import HTTPS_PORT, TlsPolicies


def interface_addresses() -> tuple[str, ...]:
    """The pod's own addresses, for the ``ipme`` default (REMOTE-16)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return ()
    return tuple(sorted({str(info[4][0]) for info in infos}))


def concurrency(c: Controls) -> int:
    """``concurrencyremote`` capped by ``spawnlimit``; at least one consumer slot."""
    return max(1, min(c.concurrencyremote, c.spawnlimit))


async def build(settings: Settings) -> Service:
    return assemble(
        settings,
        queue=open_store(settings, settings.queue_bucket),
        resolver=async_resolver(settings.dns_servers),
        interfaces=interface_addresses(),
        environ=os.environ,
        smtp_port=settings.remote_smtp_port,
        https_port=settings.remote_https_port,
    )


def assemble(
    settings: Settings,
    *,
    queue: BlobStore,
    resolver: dns.asyncresolver.Resolver,
    interfaces: Collection[str] = (),
    environ: Mapping[str, str],
    smtp_port: int = SMTP_PORT,
    https_port: int = HTTPS_PORT,
) -> Service:
    """The service from its parts; tests hand in their own store, resolver, SMTP and HTTPS
    ports."""
    watcher = ControlWatcher(settings.control, environ, on_change=lambda _: None)  # CTL-06
    conn = NatsConnection(
        settings,
        "remote",
        streams=(subjects.STREAM_RESULT,),
        kv_buckets=(subjects.KV_TCPTO, subjects.KV_DELIVERIES, subjects.KV_MTASTS),
    )
    keys = Keys(settings.control)  # DKIM and ARC; a bad key stops startup (issue 11)
    delivery = RemoteDelivery(
        bus=conn,
        queue=queue,
        controls=lambda: watcher.current,  # REMOTE-02: the controls of the moment, per job
        resolver=resolver,
        timeouts=SharedTimeouts(lambda: conn.kv(subjects.KV_TCPTO)),
        ledger=Ledger(lambda: conn.kv(subjects.KV_DELIVERIES)),  # hardening #10
        interfaces=interfaces,
        smtp_port=smtp_port,
        signer=Signer(keys),
        sealer=Sealer(keys),  # ARC for forwarded mail (RFC 8617)
        policies=TlsPolicies(  # MTA-STS and DANE (issue 11)
            resolver,
            lambda: conn.kv(subjects.KV_MTASTS),
            ca_file=settings.tls_ca_file,
            https_port=https_port,
        ),
    )
    jobs = Consumer(
        conn,
        stream=subjects.STREAM_REMOTE,
        durable=subjects.CONSUMER_REMOTE,
        event=RemoteJob,
        handle=delivery.handle,
        concurrency=concurrency(watcher.current),
        handle_batch=delivery.handle_batch,  # REMOTE-40: one transaction per message and domain
        batch_key=batch_key,
        on_shunt=metrics.SHUNTED.labels(subjects.CONSUMER_REMOTE).inc,  # hardening #11
    )
    return Service(
        "remote",
        [watcher, conn, jobs],
        {"nats": conn.check, "queue-store": queue.ping, "job-consumer": jobs.check},
    )
