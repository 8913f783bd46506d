"""lists' composition root: NATS, the queue store, the DMARC resolver, the job consumer."""

from __future__ import annotations

from qmesh.bus.connection import NatsConnection
from qmesh.bus.consumer import Consumer
from qmesh.contract import subjects
from qmesh.lists.events import ListJob
from qmesh.lists.names import LISTS_PENDING
from qmesh.runtime.service import Service
from qmesh.runtime.settings import Settings
from qmesh.store.factory import open_store
from services.lists.config import ListsSettings
from services.lists.consumer import Lists
from services.lists.dmarc import strict_check
from services.lists.metrics import SHUNTED
from services.lists.timer import Timer


async def build(settings: Settings) -> Service:
    own = ListsSettings()
    conn = NatsConnection(
        settings,
        "lists",
        streams=(subjects.STREAM_TODO, subjects.STREAM_LISTS),
        kv_buckets=(subjects.KV_DIRECTORY, subjects.KV_LISTS, subjects.KV_DELIVERIES),
    )
    queue = open_store(settings, settings.queue_bucket)

    lists = Lists(
        bus=conn,
        queue=queue,
        directory=lambda: conn.kv(subjects.KV_DIRECTORY),
        kv=lambda: conn.kv(subjects.KV_LISTS),
        deliveries=lambda: conn.kv(subjects.KV_DELIVERIES),  # jobs carried out (TTL 8 days)
        dmarc=strict_check(settings.dns_servers),
        one_click_base=own.lists_unsubscribe_url,
    )
    jobs = Consumer(
        conn,
        stream=subjects.STREAM_LISTS,
        durable=subjects.CONSUMER_LISTS,
        event=ListJob,
        handle=lists.handle,
        concurrency=LISTS_PENDING,
        on_shunt=SHUNTED.inc,  # a job failing with a bug goes to QMESH_SHUNT (#11)
    )
    timer = Timer(conn, lists.sweep, own.lists_timer_seconds)
    return Service(
        "lists",
        [conn, jobs, timer],
        {"nats": conn.check, "queue-store": queue.ping, "job-consumer": jobs.check},
    )
