"""local's composition root: controls, NATS, both stores, the job consumer, the rcptcheck API."""

from __future__ import annotations

import os

from qmesh.bus.connection import NatsConnection, NotConnected
from qmesh.bus.consumer import Consumer
from qmesh.bus.ledger import Ledger
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.contract.events import LocalJob
from qmesh.control.values import Controls
from qmesh.control.watch import ControlWatcher
from qmesh.directory.cache import DirectoryCache
from qmesh.directory.store import Directory
from qmesh.lists.handoff import Handoff
from qmesh.runtime.service import Service
from qmesh.runtime.settings import Settings
from qmesh.store.factory import open_store
from services.local import metrics
from services.local.config import LocalConfig, local_config
from services.local.consumer import LocalDelivery
from services.local.lookup import UNREADABLE, DirectoryReader
from services.local.rcptcheck import RcptCheckService
from services.local.replied import Replied


async def build(settings: Settings) -> Service:
    config: dict[str, LocalConfig] = {}

    def reloaded(controls: Controls) -> None:
        config["now"] = local_config(controls)

    watcher = ControlWatcher(settings.control, os.environ, on_change=reloaded)  # CTL-06
    reloaded(watcher.current)
    conn = NatsConnection(
        settings,
        "local",
        streams=(subjects.STREAM_TODO, subjects.STREAM_RESULT),
        kv_buckets=(subjects.KV_DIRECTORY, subjects.KV_DELIVERIES),
    )
    queue = open_store(settings, settings.queue_bucket)
    mail = open_store(settings, settings.mail_bucket)

    def store() -> Directory:
        try:
            return Directory(conn.kv(subjects.KV_DIRECTORY))
        except NotConnected as err:
            raise Temporary(UNREADABLE) from err

    records = DirectoryCache(conn)  # the records deliveries read, watched (throughput #10)
    cached = records.reader(store)

    def directory() -> DirectoryReader:
        return cached

    delivery = LocalDelivery(
        bus=conn,
        queue=queue,
        mail=mail,
        directory=directory,
        config=lambda: config["now"],
        ledger=Ledger(lambda: conn.kv(subjects.KV_DELIVERIES)),  # hardening #10
        handoff=Handoff(queue, conn),  # mailing lists (issue #15)
        replied=Replied(lambda: conn.kv(subjects.KV_DELIVERIES)),  # vacation replies (issue 14)
    )
    jobs = Consumer(
        conn,
        stream=subjects.STREAM_LOCAL,
        durable=subjects.CONSUMER_LOCAL,
        event=LocalJob,
        handle=delivery.handle,
        concurrency=config["now"].concurrency,
        on_shunt=metrics.SHUNTED.labels(subjects.CONSUMER_LOCAL).inc,  # hardening #11
    )
    rcptcheck = RcptCheckService(conn, directory)
    return Service(
        "local",
        [watcher, conn, records, rcptcheck, jobs],
        {
            "nats": conn.check,
            "queue-store": queue.ping,
            "mail-store": mail.ping,
            "job-consumer": jobs.check,
            "rcptcheck": rcptcheck.check,
        },
    )
