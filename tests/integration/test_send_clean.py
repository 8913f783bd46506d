"""send's cleanup against a real nats-server and real stores (CLEAN-02, -03, -05, -06, ARCH-05).

The orphan sweep reads the bodies in the store, the records in KV ``qmesh_queue`` and the todo
events pending in ``QMESH_TODO``. Its clock is injected, so a body written a moment ago can be
looked at as if 35 or 37 hours had passed. Each test has a nats-server of its own, because the
pending todo events must be this test's alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from qmesh.bus.connection import NatsConnection
from qmesh.bus.jetstream import JetStreamPublisher
from qmesh.bus.provision import ensure_kv, provision_streams
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.contract.envelope import Envelope
from qmesh.contract.events import Origin, RemoteJob, Result, Todo
from qmesh.contract.ids import QueueId, new_queue_id
from qmesh.contract.queue import enqueue
from qmesh.directory.domains import DirectoryDomains
from qmesh.routing.classify import RoutingRules
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobNotFound, BlobStore
from qmesh.store.files import FileStore
from qmesh.store.keys import body_key
from services.send.bounce import BounceControls
from services.send.cleaner import Cleaner, pending_todo_ids
from services.send.config import SendConfig
from services.send.consumer import SendQueue
from services.send.owner import Ownership
from services.send.plan import preprocess
from services.send.schedule import Timer
from services.send.store import StateStore

pytestmark = pytest.mark.integration

HOUR = 3600.0
BODY = b"Subject: orphan\n\nnever queued\n"
RULES = RoutingRules.build(
    envnoathost="mx.example.test", percenthack=[], locals=["example.test"], virtualdomains=[]
)


@pytest.fixture
async def nc(private_nats: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(private_nats.url)
    await provision_streams(client.jetstream())
    yield client
    await client.close()


async def states_of(nc: NATS) -> StateStore:
    kv = await ensure_kv(nc.jetstream(), subjects.KV_QUEUE)
    return StateStore(lambda: kv)


def cleaner(nc: NATS, states: StateStore, blobs: BlobStore, hours: float) -> Cleaner:
    """A cleaner whose clock runs ``hours`` ahead of now."""
    return Cleaner(
        states=states,
        blobs=blobs,
        todos=lambda: pending_todo_ids(nc.jetstream()),
        clock=lambda: time.time() + hours * HOUR,
    )


async def orphan(blobs: BlobStore) -> QueueId:
    """A body whose enqueue never published its todo (QUEUE-07: at most an orphan)."""
    qid = new_queue_id()
    await blobs.put(body_key(qid), BODY, create_only=True)
    return qid


async def exists(blobs: BlobStore, qid: str) -> bool:
    try:
        await blobs.stat(body_key(QueueId(qid)))
    except BlobNotFound:
        return False
    return True


def record_for(qid: QueueId) -> Todo:
    return Todo(
        id=qid,
        qp=4711,
        envelope=Envelope(sender="joe@far.test", recipients=("bob@far.test",)),
        origin=Origin(kind="inject"),
        size=len(BODY),
        queued_at=time.time(),
    )


async def test_clean_03_orphan_body_older_than_36h_is_removed(nc: NATS, blobs: BlobStore) -> None:
    states = await states_of(nc)
    qid = await orphan(blobs)
    assert await cleaner(nc, states, blobs, 37).sweep() == [qid]
    assert not await exists(blobs, qid)
    assert await cleaner(nc, states, blobs, 37).sweep() == []  # a second sweep: nothing left


async def test_clean_03_orphan_body_younger_than_36h_is_kept(nc: NATS, blobs: BlobStore) -> None:
    states = await states_of(nc)
    qid = await orphan(blobs)
    assert await cleaner(nc, states, blobs, 35).sweep() == []  # an enqueue may still run
    assert await exists(blobs, qid)


async def test_clean_06_live_body_with_a_record_is_kept(nc: NATS, blobs: BlobStore) -> None:
    states = await states_of(nc)
    qid = await orphan(blobs)
    assert await states.create(preprocess(record_for(qid), RULES, set(), time.time()))
    gone = await orphan(blobs)
    assert await cleaner(nc, states, blobs, 24 * 30).sweep() == [gone]  # whatever its age
    assert await exists(blobs, qid)


async def test_clean_06_live_body_with_a_pending_todo_is_kept(nc: NATS, blobs: BlobStore) -> None:
    states = await states_of(nc)
    queued = await enqueue(  # no send runs: the todo event stays pending
        blobs,
        JetStreamPublisher(nc.jetstream()),
        sender="joe@far.test",
        recipients=["bob@far.test"],
        body=BODY,
        origin=Origin(kind="inject"),
    )
    assert await pending_todo_ids(nc.jetstream()) == {queued.id}
    assert await cleaner(nc, states, blobs, 37).sweep() == []
    assert await exists(blobs, queued.id)


async def test_clean_05_sweep_runs_at_start_and_again_after_the_interval(
    nc: NATS, tmp_path: Path
) -> None:
    blobs = FileStore(tmp_path / "store", "qmesh-queue")
    states = await states_of(nc)
    first = await orphan(blobs)
    running = Cleaner(
        states=states,
        blobs=blobs,
        todos=lambda: pending_todo_ids(nc.jetstream()),
        clock=lambda: time.time() + 37 * HOUR,
        interval=0.3,
    )
    await running.start()
    try:
        await until_gone(blobs, first)  # the sweep at start
        second = await orphan(blobs)
        await until_gone(blobs, second)  # the next sweep, one interval later
    finally:
        await running.stop()


async def until_gone(blobs: BlobStore, qid: str) -> None:
    deadline = time.monotonic() + 10
    while await exists(blobs, qid):
        assert time.monotonic() < deadline, f"{qid} still there"
        await asyncio.sleep(0.05)


class WatchedStore(FileStore):
    """A file store that notes, at each body deletion, whether the record was still there."""

    states: StateStore
    seen: list[tuple[str, bool]]

    async def delete(self, key: str) -> None:
        qid = key.removeprefix("mess/")
        self.seen.append((qid, await self.states.load(qid) is not None))
        await super().delete(key)


async def test_clean_02_arch_05_body_deleted_only_after_the_record(
    nc: NATS, private_nats: NatsServer, tmp_path: Path
) -> None:
    js = nc.jetstream()
    states = await states_of(nc)
    blobs = WatchedStore(tmp_path / "store", "qmesh-queue")
    blobs.states, blobs.seen = states, []
    config = SendConfig(
        rules=RULES,
        bounce=BounceControls(
            bouncefrom="MAILER-DAEMON",
            bouncehost="mx.example.test",
            doublebounceto="postmaster",
            doublebouncehost="mx.example.test",
        ),
        queuelifetime=604800,
        concurrencylocal=10,
        concurrencyremote=20,
    )
    settings = Settings(nats_url=private_nats.url, store=f"file://{tmp_path / 'store'}")
    leases = await ensure_kv(js, subjects.KV_LEASES, 1)
    queue = SendQueue(
        bus=JetStreamPublisher(js),
        states=states,
        blobs=blobs,
        config=lambda: config,
        domains=DirectoryDomains(NatsConnection(settings, "send")),  # not consulted here
        owner=Ownership(lambda: leases),
        timer=Timer(),
    )
    jobs: list[RemoteJob] = []

    async def on_job(msg: Msg) -> None:
        jobs.append(RemoteJob.decode(msg.data))

    sub = await nc.subscribe(subjects.job("remote"), cb=on_job)
    queued = await enqueue(
        blobs,
        JetStreamPublisher(js),
        sender="joe@far.test",
        recipients=["bob@far.test"],
        body=BODY,
        origin=Origin(kind="inject"),
    )
    # what on_todo does (SEND-01, SEND-21), the directory left out
    assert await states.create(preprocess(record_for(queued.id), RULES, set(), time.time()))
    await queue.attend(queued.id)
    deadline = time.monotonic() + 10
    while not jobs:
        assert time.monotonic() < deadline, "no remote job published"
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    await queue.on_result(Result.for_job(jobs[0], "delivered", "250 ok"))  # SEND-31
    assert blobs.seen == [(queued.id, False)]  # the record was gone when the body went
    assert await states.load(queued.id) is None
    assert not await exists(blobs, queued.id)


async def test_a_finished_records_marker_goes_after_its_ttl_even_in_an_older_bucket(
    nc: NATS,
) -> None:
    """A removed record leaves a marker that tells a finished message from one whose record is
    yet to come; it now goes after REMOVED_MARKER_TTL (an hour, here 1 s) instead of staying
    for good, one per message ever queued. A bucket made before per-message TTLs were asked
    for takes them after the setup step."""
    js = nc.jetstream()
    bucket = "qmesh_queue_older"
    await js.add_stream(  # as an older setup made it: no per-message TTLs
        StreamConfig(
            name=f"KV_{bucket}",
            subjects=[f"$KV.{bucket}.>"],
            max_msgs_per_subject=1,
            allow_rollup_hdrs=True,
            deny_delete=True,
            allow_direct=True,
            storage=StorageType.FILE,
        )
    )
    assert not (await js.stream_info(f"KV_{bucket}")).config.allow_msg_ttl
    kv = await ensure_kv(js, bucket)  # the setup step
    states = StateStore(lambda: kv, marker_ttl=1.0)
    qid = new_queue_id()
    assert await states.create(preprocess(record_for(qid), RULES, set(), time.time()))
    loaded = await states.load(qid)
    assert loaded is not None
    assert await states.remove_at(qid, loaded[1])
    assert await states.removed(qid)  # finished, not yet to come
    deadline = time.monotonic() + 10
    while (await js.stream_info(f"KV_{bucket}")).state.messages:
        assert time.monotonic() < deadline, "the removal marker stayed"
        await asyncio.sleep(0.2)
    assert not await states.removed(qid)
