"""send's retry schedule and queue lifetime against a real nats-server (SEND-20..24, BOUNCE-01).

send's queue runs on a fake clock that the test moves by hand, so a message can age by hours
in a moment. Messages go in through ``enqueue()``; the todo read back from ``QMESH_TODO`` is
handed to ``SendQueue.on_todo`` as send's todo consumer would. No local or remote runs: the
test reads each job from ``QMESH_LOCAL`` or ``QMESH_REMOTE`` and answers it with a result, as
they would. The expected times are Appendix A's table, written out, not computed.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext

from qmesh.bus.connection import NatsConnection
from qmesh.bus.jetstream import JetStreamPublisher
from qmesh.bus.provision import ensure_kv, provision_streams
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.contract.events import Job, LocalJob, Origin, RemoteJob, Result, Todo
from qmesh.contract.ids import QueueId
from qmesh.contract.queue import enqueue
from qmesh.contract.subjects import Channel
from qmesh.directory.domains import DirectoryDomains
from qmesh.routing.classify import RoutingRules
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobNotFound
from qmesh.store.files import FileStore
from qmesh.store.keys import body_key
from services.send.bounce import BounceControls
from services.send.config import SendConfig
from services.send.consumer import SendQueue
from services.send.owner import Ownership
from services.send.schedule import Timer
from services.send.state import MessageState
from services.send.store import StateStore

pytestmark = pytest.mark.integration

WEEK = 604800
BODY = b"Subject: patience\n\nplease wait\n"
SENDER = "joe@far.test"
REMOTE_RCPT = "bob@far.test"
LOCAL_RCPT = "bob@example.test"
# Appendix A: attempt k starts this many seconds after birth when every pass is on time
REMOTE_TIMES = (0, 400, 1600, 3600, 6400, 10000)
LOCAL_TIMES = (0, 100, 400, 900, 1600, 2500)
REPORT = "Connected to 192.0.2.7 but sender was rejected.\nRemote host said: 451 try later\n"
LIFETIME_LINE = "I'm not going to try again; this message has been in the queue too long."


class FakeClock:
    """The time send sees: moved only by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class WakeLog(Timer):
    """send's timer, not started: it only notes when send asks to look at a message again."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.wakes: list[tuple[str, float]] = []

    def wake(self, qid: str, when: float) -> None:
        self.wakes.append((qid, when))
        super().wake(qid, when)


@dataclass
class Send:
    """A SendQueue on a fake clock, and how to look at what it published and recorded."""

    queue: SendQueue
    js: JetStreamContext
    states: StateStore
    blobs: FileStore
    clock: FakeClock
    timer: WakeLog

    async def put(self, recipient: str) -> tuple[QueueId, float]:
        """Enqueue a message and hand its todo to send; its id and birth time."""
        queued = await enqueue(
            self.blobs,
            JetStreamPublisher(self.js),
            sender=SENDER,
            recipients=[recipient],
            body=BODY,
            origin=Origin(kind="inject"),
            clock=self.clock,
        )
        todo = await self.last_todo()
        assert todo.id == queued.id
        await self.queue.on_todo(todo)  # SEND-01, SEND-21
        return queued.id, (await self.record(queued.id)).birth

    async def count(self, stream: str) -> int:
        return (await self.js.stream_info(stream)).state.messages

    async def last_todo(self) -> Todo:
        msg = await self.js.get_last_msg(subjects.STREAM_TODO, subjects.TODO)
        assert msg.data is not None
        return Todo.decode(msg.data)

    async def last_job(self, channel: Channel) -> Job:
        msg = await self.js.get_last_msg(subjects.job_stream(channel), subjects.job(channel))
        assert msg.data is not None
        return (LocalJob if channel == "local" else RemoteJob).decode(msg.data)

    async def record(self, qid: str) -> MessageState:
        loaded = await self.states.load(qid)
        assert loaded is not None, f"no record of {qid}"
        return loaded[0]


@contextlib.asynccontextmanager
async def running_send(
    private_nats: NatsServer, tmp_path: Path, queuelifetime: int
) -> AsyncIterator[Send]:
    """send's queue wired as services/send/app.py does, but on a fake clock and no consumers."""
    nc = await nats.connect(private_nats.url)
    js = nc.jetstream()
    await provision_streams(js)
    settings = Settings(nats_url=private_nats.url, store=f"file://{tmp_path / 'store'}")
    conn = NatsConnection(settings, "send", kv_buckets=(subjects.KV_DIRECTORY,))
    await conn.start()
    domains = DirectoryDomains(conn)  # an empty directory: example.test is local by `locals`
    await domains.start()
    try:
        await domains.loaded.wait()
        kv = await ensure_kv(js, subjects.KV_QUEUE)
        leases = await ensure_kv(js, subjects.KV_LEASES, 1)
        states = StateStore(lambda: kv)
        blobs = FileStore(tmp_path / "store", "qmesh-queue")
        clock = FakeClock(1_760_000_000.0)
        timer = WakeLog(clock)
        config = SendConfig(
            rules=RoutingRules.build(
                envnoathost="mx.example.test",
                percenthack=[],
                locals=["example.test"],
                virtualdomains=[],
            ),
            bounce=BounceControls(
                bouncefrom="MAILER-DAEMON",
                bouncehost="mx.example.test",
                doublebounceto="postmaster",
                doublebouncehost="mx.example.test",
            ),
            queuelifetime=queuelifetime,
            concurrencylocal=10,
            concurrencyremote=20,
        )
        queue = SendQueue(
            bus=JetStreamPublisher(js),
            states=states,
            blobs=blobs,
            config=lambda: config,
            domains=domains,
            timer=timer,
            owner=Ownership(lambda: leases),
            clock=clock,
        )
        yield Send(queue, js, states, blobs, clock, timer)
    finally:
        await domains.stop()
        await conn.stop()
        await nc.close()


async def follow_schedule(send: Send, channel: Channel, rcpt: str, times: tuple[int, ...]) -> None:
    """Defer every attempt; each next pass must start at its Appendix A time and not before."""
    other: Channel = "remote" if channel == "local" else "local"
    stream = subjects.job_stream(channel)
    qid, birth = await send.put(rcpt)
    assert birth == send.clock.now  # the birth time is send's clock at preprocessing

    for attempt, (started, due) in enumerate(itertools.pairwise(times), start=1):
        # pass `attempt` has started: exactly one job for it, the next attempt fixed (SEND-22)
        assert await send.count(stream) == attempt
        job = await send.last_job(channel)
        assert (job.id, job.rcpt_index, job.attempt, job.recipient) == (qid, 0, attempt, rcpt)
        state = await send.record(qid)
        p = state.pass_of(channel)
        assert (p.attempt, p.started, p.inflight) == (attempt, birth + started, (0,))
        assert p.next_at == birth + due, f"attempt {attempt}: next at {p.next_at}, birth {birth}"
        assert not p.final

        # a deferral (SEND-30 Z) some seconds later: the recipient stays NOT DONE, no new job
        send.clock.now = birth + started + 30
        await send.queue.on_result(Result.for_job(job, "deferred", REPORT))
        state = await send.record(qid)
        assert state.pass_of(channel).inflight == ()
        assert state.pass_of(channel).next_at == birth + due  # fixed at the start, not now
        assert not state.recipients[0].done and state.recipients[0].attempts == attempt
        assert state.bounces == ()
        assert await send.count(stream) == attempt
        assert send.timer.wakes[-1] == (qid, birth + due)  # the timer will look at the due time

        # one second early: nothing starts
        send.clock.now = birth + due - 1
        await send.queue.attend(qid)
        assert await send.count(stream) == attempt
        assert (await send.record(qid)).pass_of(channel).attempt == attempt

        # on time: exactly one new job, for the next attempt
        send.clock.now = birth + due
        await send.queue.attend(qid)
        assert await send.count(stream) == attempt + 1
        assert (await send.last_job(channel)).attempt == attempt + 1

    assert await send.count(subjects.job_stream(other)) == 0


async def test_send_20_remote_retries_at_the_appendix_a_times(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    async with running_send(private_nats, tmp_path, WEEK) as send:
        await follow_schedule(send, "remote", REMOTE_RCPT, REMOTE_TIMES)


async def test_send_20_local_retries_at_the_appendix_a_times(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    async with running_send(private_nats, tmp_path, WEEK) as send:
        await follow_schedule(send, "local", LOCAL_RCPT, LOCAL_TIMES)


@pytest.mark.parametrize(
    ("queuelifetime", "final_attempt"),
    [
        (1000, 3),  # attempt 3 at +1600 s starts after birth + 1000: final
        (1600, 4),  # attempt 3 at exactly +1600 s is not after it; attempt 4 at +3600 s is
    ],
)
async def test_send_24_queuelifetime_turns_the_last_deferral_into_a_bounce(
    private_nats: NatsServer, tmp_path: Path, queuelifetime: int, final_attempt: int
) -> None:
    async with running_send(private_nats, tmp_path, queuelifetime) as send:
        qid, birth = await send.put(REMOTE_RCPT)
        stream = subjects.STREAM_REMOTE
        for attempt in range(1, final_attempt + 1):
            started = REMOTE_TIMES[attempt - 1]
            assert send.clock.now == birth + started
            assert await send.count(stream) == attempt
            job = await send.last_job("remote")
            assert job.attempt == attempt
            state = await send.record(qid)
            assert state.pass_of("remote").final == (attempt == final_attempt)
            assert state.pass_of("remote").next_at == birth + REMOTE_TIMES[attempt]

            send.clock.now = birth + started + 30
            await send.queue.on_result(Result.for_job(job, "deferred", REPORT))
            if attempt == final_attempt:
                break
            # not yet final: the deferral stays a deferral, no bounce is queued
            state = await send.record(qid)
            assert not state.recipients[0].done and state.bounces == ()
            assert await send.count(subjects.STREAM_TODO) == 1
            send.clock.now = birth + REMOTE_TIMES[attempt]
            await send.queue.attend(qid)

        # the final pass was really made (SEND-24) and its deferral became a bounce (BOUNCE-01)
        assert await send.count(stream) == final_attempt
        assert await send.count(subjects.STREAM_TODO) == 2
        bounce = await send.last_todo()
        assert bounce.id != qid
        assert bounce.origin.kind == "bounce"  # BOUNCE-03
        assert (bounce.envelope.sender, bounce.envelope.recipients) == ("", (SENDER,))  # BOUNCE-02
        text = (await send.blobs.get(body_key(bounce.id))).decode()
        assert "invoked for bounce" in text.splitlines()[0]
        assert f"<{REMOTE_RCPT}>:\n{REPORT}{LIFETIME_LINE}\n" in text
        assert "Status: 5.4.7" in text  # BOUNCE-21: delivery time expired

        # the original is finished: record first, then the body (SEND-31, ARCH-05)
        assert await send.states.load(qid) is None
        with pytest.raises(BlobNotFound):
            await send.blobs.stat(body_key(qid))
        assert await send.count(stream) == final_attempt  # and nothing more was tried
