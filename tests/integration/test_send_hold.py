"""A held channel (SEND-26) against a real nats-server: its record is not re-read in a loop.

The message's record lives in the real KV ``qmesh_queue``; send's real timer drives
``SendQueue.attend``. The remote pass was deferred long ago, so its next attempt is past,
but ``concurrencyremote`` is 0: nothing may start, and the message must be looked at again
later (the minute sweep), not at once over and over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from qmesh.bus.connection import NatsConnection
from qmesh.bus.jetstream import JetStreamPublisher
from qmesh.bus.provision import ensure_kv, provision_streams
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.contract.envelope import Envelope
from qmesh.contract.events import Origin, Result, Todo
from qmesh.contract.ids import new_queue_id
from qmesh.directory.domains import DirectoryDomains
from qmesh.routing.classify import RoutingRules
from qmesh.runtime.settings import Settings
from qmesh.store.files import FileStore
from qmesh.store.keys import body_key
from services.send.bounce import BounceControls
from services.send.config import SendConfig
from services.send.consumer import SendQueue
from services.send.owner import Ownership
from services.send.plan import apply_result, preprocess, start_pass
from services.send.schedule import Timer
from services.send.store import StateStore

pytestmark = pytest.mark.integration

WEEK = 604800
CONFIG = SendConfig(
    rules=RoutingRules.build(
        envnoathost="mx.example.test", percenthack=[], locals=["example.test"], virtualdomains=[]
    ),
    bounce=BounceControls(
        bouncefrom="MAILER-DAEMON",
        bouncehost="mx.example.test",
        doublebounceto="postmaster",
        doublebouncehost="mx.example.test",
    ),
    queuelifetime=WEEK,
    concurrencylocal=10,
    concurrencyremote=0,  # SEND-26: the remote channel is held
)


@pytest.fixture
async def nc(private_nats: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(private_nats.url)
    await provision_streams(client.jetstream())
    yield client
    await client.close()


async def test_send_26_held_channel_past_due_is_not_attended_in_a_loop(
    nc: NATS, private_nats: NatsServer, tmp_path: Path
) -> None:
    js = nc.jetstream()
    kv = await ensure_kv(js, subjects.KV_QUEUE)
    states = StateStore(lambda: kv)
    blobs = FileStore(tmp_path / "store", "qmesh-queue")
    qid = new_queue_id()
    await blobs.put(body_key(qid), b"Subject: held\n\nheld\n", create_only=True)

    # deferred on its first pass an hour ago: its next attempt (birth + 400 s) is past
    birth = time.time() - 3600
    todo = Todo(
        id=qid,
        qp=4711,
        envelope=Envelope(sender="joe@far.test", recipients=("bob@far.test",)),
        origin=Origin(kind="inject"),
        size=20,
        queued_at=birth,
    )
    started, jobs = start_pass(preprocess(todo, CONFIG.rules, set(), birth), "remote", birth, WEEK)
    state = apply_result(started, Result.for_job(jobs[0], "deferred", "421 busy"), birth + 1)
    assert state is not None and state.pass_of("remote").next_at == birth + 400
    assert await states.create(state)

    config = CONFIG
    settings = Settings(nats_url=private_nats.url, store=f"file://{tmp_path / 'store'}")
    timer = Timer(sweep_interval=3600.0)
    leases = await ensure_kv(js, subjects.KV_LEASES, 1)
    queue = SendQueue(
        bus=JetStreamPublisher(js),
        states=states,
        blobs=blobs,
        config=lambda: config,
        domains=DirectoryDomains(NatsConnection(settings, "send")),  # not consulted here
        owner=Ownership(lambda: leases),
        timer=timer,
    )
    attended = 0

    async def attend(qid: str) -> None:
        nonlocal attended
        attended += 1
        await queue.attend(qid)

    timer.bind(attend, states.ids)
    await timer.start()
    try:
        await asyncio.sleep(1.0)
        # one attendance from the start-up sweep; before the fix, thousands
        assert attended == 1
        loaded = await states.load(qid)
        assert loaded is not None and loaded[0].pass_of("remote").attempt == 1  # nothing started

        # the hold ends (controls changed): the next look starts the pass
        config = dataclasses.replace(CONFIG, concurrencyremote=20)
        await queue.attend(qid)
        loaded = await states.load(qid)
        assert loaded is not None
        assert loaded[0].pass_of("remote").attempt == 2 and loaded[0].pass_of("remote").inflight
    finally:
        await timer.stop()
