"""send's composition root: controls, NATS, the queue store, consumers, the timer, flush and
the orphan sweep."""

from __future__ import annotations

import os

from qmesh.bus.connection import NatsConnection
from qmesh.bus.consumer import Consumer
from qmesh.contract import subjects
from qmesh.contract.events import Result, Todo
from qmesh.control import ControlWatcher
from qmesh.control.derived import Derived, ignore_change
from qmesh.directory.domains import DirectoryDomains
from qmesh.runtime.service import Service
from qmesh.runtime.settings import Settings
from qmesh.store.factory import open_store
from services.send.cleaner import Cleaner, pending_todo_ids
from services.send.config import send_config
from services.send.consumer import SendQueue
from services.send.depth import QueueDepth
from services.send.flush import Flusher
from services.send.owner import Ownership
from services.send.schedule import Timer
from services.send.store import StateStore


async def build(settings: Settings) -> Service:
    watcher = ControlWatcher(settings.control, os.environ, on_change=ignore_change)
    config = Derived(watcher, send_config)  # a bad control stops startup
    conn = NatsConnection(
        settings,
        "send",
        streams=(
            subjects.STREAM_TODO,
            subjects.STREAM_LOCAL,
            subjects.STREAM_REMOTE,
            subjects.STREAM_RESULT,
        ),
        kv_buckets=(subjects.KV_QUEUE, subjects.KV_DIRECTORY, subjects.KV_LEASES),
    )
    blobs = open_store(settings, settings.queue_bucket)
    domains = DirectoryDomains(conn)
    timer = Timer()
    states = StateStore(lambda: conn.kv(subjects.KV_QUEUE))

    queue = SendQueue(
        bus=conn,
        states=states,
        blobs=blobs,
        config=config,
        domains=domains,
        timer=timer,
        owner=Ownership(lambda: conn.kv(subjects.KV_LEASES)),
    )
    timer.bind(queue.attend, states.ids)
    todo = Consumer(
        conn,
        stream=subjects.STREAM_TODO,
        durable=subjects.CONSUMER_SEND_TODO,
        event=Todo,
        handle=queue.on_todo,
        concurrency=32,
    )
    results = Consumer(
        conn,
        stream=subjects.STREAM_RESULT,
        durable=subjects.CONSUMER_SEND_RESULT,
        event=Result,
        handle=queue.on_result,
        concurrency=64,
    )
    flusher = Flusher(conn=conn, states=states, timer=timer, config=config)  # SEND-25
    depth = QueueDepth(  # the gauges the chart's queue-age alerts read; the status line
        conn, states.ids, lambda: (config().concurrencylocal, config().concurrencyremote)
    )
    cleaner = Cleaner(states=states, blobs=blobs, todos=lambda: pending_todo_ids(conn.js))
    return Service(
        "send",
        [watcher, conn, domains, timer, todo, results, flusher, cleaner, depth],
        {
            "nats": conn.check,
            "queue-store": blobs.ping,
            "directory": domains.check,
            "todo-consumer": todo.check,
            "result-consumer": results.check,
            "flush": flusher.check,
        },
    )
