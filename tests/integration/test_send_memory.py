"""send keeps the record it owns in memory (throughput #10) without acting on a stale one
(ARCH-06), and asks the store for a todo's body only when the todo is a repeat, against a real
nats-server.

Reads and writes of KV ``qmesh_queue`` and ``qmesh_leases`` are counted by a second connection
subscribed to the subjects JetStream serves them on (a core subscriber sees every request), so
what is counted is what the server was asked, not what a client library says it did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from qmesh.bus.connection import NatsConnection
from qmesh.bus.consumer import Consumer
from qmesh.bus.jetstream import JetStreamPublisher
from qmesh.bus.provision import ensure_consumer, ensure_kv
from qmesh.bus.shunt import requeue_headers
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.contract.events import Job, LocalJob, Origin, Result, Todo
from qmesh.contract.ids import QueueId, new_queue_id
from qmesh.contract.queue import enqueue
from qmesh.directory.domains import DirectoryDomains
from qmesh.routing.classify import RoutingRules
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobInfo, BlobNotFound
from qmesh.store.files import FileStore
from qmesh.store.keys import body_key
from services.send.bounce import BounceControls
from services.send.config import SendConfig
from services.send.consumer import SendQueue
from services.send.owner import Ownership
from services.send.schedule import Timer
from services.send.state import MessageState
from services.send.store import StateStore
from tests.integration.bus_events import todo_consumer

pytestmark = pytest.mark.integration

RCPT = "bob@example.test"
BODY = b"Subject: once\n\nread me once\n"
LOCAL_RETRY = 100  # Appendix A: the second local attempt, seconds after birth
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
    queuelifetime=604800,
    concurrencylocal=10,
    concurrencyremote=20,
)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class KvTraffic:
    """What nats-server is asked about the two buckets, seen from a core subscription."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def watch(self, nc: NATS) -> None:
        for bucket in (subjects.KV_QUEUE, subjects.KV_LEASES):
            for subject, what in (
                (f"$JS.API.DIRECT.GET.KV_{bucket}", "read"),
                (f"$JS.API.DIRECT.GET.KV_{bucket}.>", "read"),
                (f"$JS.API.STREAM.MSG.GET.KV_{bucket}", "read"),
                (f"$KV.{bucket}.>", "write"),
            ):
                await nc.subscribe(subject, cb=self._counter(f"{bucket} {what}"))
        await nc.flush()

    def _counter(self, name: str) -> Callable[[Msg], Awaitable[None]]:
        async def count(_: Msg) -> None:
            self.counts[name] += 1

        return count

    def reset(self) -> None:
        self.counts.clear()

    def __getitem__(self, name: str) -> int:
        return self.counts[name]


class CountingStore(FileStore):
    """The directory store, counting the looks for an object (a ``HEAD`` on S3)."""

    stats = 0

    async def stat(self, key: str) -> BlobInfo:
        self.stats += 1
        return await super().stat(key)


@dataclass
class Cluster:
    js: JetStreamContext
    kv: KeyValue
    blobs: CountingStore
    clock: FakeClock
    replicas: list[SendQueue]
    traffic: KvTraffic
    spy: NATS

    async def put(self) -> Todo:
        queued = await enqueue(
            self.blobs,
            JetStreamPublisher(self.js),
            sender="joe@far.test",
            recipients=[RCPT],
            body=BODY,
            origin=Origin(kind="inject"),
            clock=self.clock,
        )
        msg = await self.js.get_last_msg(subjects.STREAM_TODO, subjects.TODO)
        assert msg.data is not None
        todo = Todo.decode(msg.data)
        assert todo.id == queued.id
        return todo

    async def last_job(self) -> Job:
        msg = await self.js.get_last_msg(subjects.STREAM_LOCAL, subjects.job("local"))
        assert msg.data is not None
        return LocalJob.decode(msg.data)

    async def settle(self) -> None:
        """Let the spy's subscription catch up with what was asked so far."""
        await self.spy.flush()
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def send_replicas(server: NatsServer, tmp_path: Path, n: int) -> AsyncIterator[Cluster]:
    """``n`` send replicas (each its own store memory and lease token) on one clock."""
    nc = await nats.connect(server.url)
    spy = await nats.connect(server.url)
    js = nc.jetstream()
    conn = NatsConnection(
        Settings(nats_url=server.url), "send", kv_buckets=(subjects.KV_DIRECTORY,)
    )
    await conn.start()
    domains = DirectoryDomains(conn)
    await domains.start()
    try:
        await domains.loaded.wait()
        kv = await ensure_kv(js, subjects.KV_QUEUE)
        leases = await ensure_kv(js, subjects.KV_LEASES, 1)
        blobs = CountingStore(tmp_path / "store", "qmesh-queue")
        clock = FakeClock(1_760_000_000.0)
        replicas = [
            SendQueue(
                bus=JetStreamPublisher(js),
                states=StateStore(lambda: kv),
                blobs=blobs,
                config=lambda: CONFIG,
                domains=domains,
                timer=Timer(clock=clock),
                owner=Ownership(lambda: leases, clock=clock),
                clock=clock,
            )
            for _ in range(n)
        ]
        traffic = KvTraffic()
        await traffic.watch(spy)
        yield Cluster(js, kv, blobs, clock, replicas, traffic, spy)
    finally:
        await domains.stop()
        await conn.stop()
        await spy.close()
        await nc.close()


async def body_exists(blobs: FileStore, qid: QueueId) -> bool:
    try:
        await blobs.stat(body_key(qid))
    except BlobNotFound:
        return False
    return True


async def test_arch_06_an_owner_never_reads_its_record_back(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """A message deferred once and then delivered: todo, result, wake-up, result. Its only
    replica writes the record once per step and reads neither the record nor the lease."""
    async with send_replicas(private_nats, tmp_path, 1) as cluster:
        (send,) = cluster.replicas
        todo = await cluster.put()
        birth = cluster.clock.now
        await cluster.settle()
        cluster.traffic.reset()

        await send.on_todo(todo)  # SEND-01, SEND-21
        first = await cluster.last_job()
        assert (first.id, first.attempt) == (todo.id, 1)
        cluster.clock.now = birth + 30
        await send.on_result(Result.for_job(first, "deferred", "try later\n"))  # SEND-30 Z
        cluster.clock.now = birth + LOCAL_RETRY
        await send.attend(todo.id)  # the timer, at the second attempt's time (SEND-20)
        second = await cluster.last_job()
        assert (second.id, second.attempt) == (todo.id, 2)
        await send.on_result(Result.for_job(second, "delivered", "did 0+1+0/\n"))

        await cluster.settle()
        counted = dict(cluster.traffic.counts)
        assert not await body_exists(cluster.blobs, todo.id)  # finished (CLEAN-02)
        assert await StateStore(lambda: cluster.kv).load(todo.id) is None
        assert counted.get(f"{subjects.KV_QUEUE} read", 0) == 0, counted
        assert counted.get(f"{subjects.KV_LEASES} read", 0) == 0, counted
        # created with pass 1 started (throughput #10), the deferral, pass 2, and the removal
        # that records the delivery
        assert counted[f"{subjects.KV_QUEUE} write"] == 4, counted
        # the todo's first pass takes no lease; taken and let go for the deferral and the
        # wake-up, the second take one compare-and-set; none for the delivery that finishes
        # the message as this replica remembers it (throughput #10)
        assert counted[f"{subjects.KV_LEASES} write"] == 4, counted


async def test_arch_06_after_another_owner_the_record_is_read_again(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """Replica A starts pass 1; replica B records its deferral as owner. When A attends the
    message at the retry time it must not trust what it remembers (pass 1 in flight) but read
    the record, and start pass 2."""
    async with send_replicas(private_nats, tmp_path, 2) as cluster:
        a, b = cluster.replicas
        todo = await cluster.put()
        birth = cluster.clock.now
        await a.on_todo(todo)
        first = await cluster.last_job()
        assert first.attempt == 1

        cluster.clock.now = birth + 30
        await b.on_result(Result.for_job(first, "deferred", "try later\n"))

        cluster.clock.now = birth + LOCAL_RETRY
        await cluster.settle()
        cluster.traffic.reset()
        await a.attend(todo.id)
        second = await cluster.last_job()
        await cluster.settle()
        assert (second.id, second.attempt) == (todo.id, 2)  # SEND-20: on time, from the record
        assert cluster.traffic[f"{subjects.KV_QUEUE} read"] == 1


async def test_arch_06_a_result_that_finishes_a_message_at_the_other_replica_takes_no_lease(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """Throughput #10: A creates the record with pass 1; its delivery's result reaches B,
    which never saw the message. B reads the record once and removes it by compare-and-set,
    with no lease taken (nothing is left to decide), then removes the body (ARCH-05)."""
    async with send_replicas(private_nats, tmp_path, 2) as cluster:
        a, b = cluster.replicas
        todo = await cluster.put()
        await a.on_todo(todo)
        first = await cluster.last_job()
        await cluster.settle()
        cluster.traffic.reset()

        await b.on_result(Result.for_job(first, "delivered", "did 0+1+0/\n"))
        await cluster.settle()
        counted = dict(cluster.traffic.counts)
        assert not await body_exists(cluster.blobs, todo.id)  # finished (CLEAN-02)
        assert await StateStore(lambda: cluster.kv).load(todo.id) is None
        assert counted.get(f"{subjects.KV_QUEUE} read", 0) == 1, counted
        assert counted.get(f"{subjects.KV_QUEUE} write", 0) == 1, counted  # the removal
        assert counted.get(f"{subjects.KV_LEASES} write", 0) == 0, counted
        assert counted.get(f"{subjects.KV_LEASES} read", 0) == 0, counted


async def test_arch_06_a_result_for_a_changed_record_is_applied_to_the_current_one(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """A remembers pass 1; B records pass 1's deferral and the clock reaches pass 2, which B
    starts. The result of pass 2 reaches A: from memory it looks early (attempt 2 > 1), so A
    must read the record before it believes that, then apply the result and finish."""
    async with send_replicas(private_nats, tmp_path, 2) as cluster:
        a, b = cluster.replicas
        todo = await cluster.put()
        birth = cluster.clock.now
        await a.on_todo(todo)
        first = await cluster.last_job()
        cluster.clock.now = birth + 30
        await b.on_result(Result.for_job(first, "deferred", "try later\n"))
        cluster.clock.now = birth + LOCAL_RETRY
        await b.attend(todo.id)
        second = await cluster.last_job()
        assert second.attempt == 2

        await a.on_result(Result.for_job(second, "delivered", "did 0+1+0/\n"))
        assert not await body_exists(cluster.blobs, todo.id)
        assert await StateStore(lambda: cluster.kv).load(todo.id) is None


async def test_arch_06_a_replica_that_lost_its_lease_leaves_the_new_owners_alone(
    private_nats: NatsServer,
) -> None:
    """A stalls past STALE and B takes the lease over; when A lets go it must not delete B's
    lease, so a third replica is still told that the message is owned."""
    nc = await nats.connect(private_nats.url)
    try:
        leases = await ensure_kv(nc.jetstream(), subjects.KV_LEASES, 1)
        qid = "1796466031786.4958636f440ea3ae"
        slow = Ownership(lambda: leases, clock=lambda: 1000.0)
        quick = Ownership(lambda: leases, clock=lambda: 1031.0)
        third = Ownership(lambda: leases, clock=lambda: 1032.0)
        async with slow.hold(qid) as owned_slow:
            assert owned_slow
            taken = quick.hold(qid)
            assert await taken.__aenter__()  # thirty-one seconds: taken over
        async with third.hold(qid) as owned_third:
            assert not owned_third  # the new owner's lease survived the old owner's release
        await taken.__aexit__(None, None, None)
        async with third.hold(qid) as owned_third:
            assert owned_third
    finally:
        await nc.close()


LIST_SIZE = 2000  # a list post: one message, every subscriber a recipient (lists #15)


async def test_send_30_results_of_one_message_are_settled_together(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """SEND-30, ARCH-05: one message to 2,000 local mailboxes whose results all arrive at once,
    taken by send's own result consumer. Each result is acked only once the record says it,
    but results that arrive while a settlement of their message is in flight are written
    together: the record is rewritten far fewer times than there are results (one write per
    result took many minutes for such a message), and the message is finished, record first
    and then its body, with nothing left to deliver again."""
    async with send_replicas(private_nats, tmp_path, 1) as cluster:
        (send,) = cluster.replicas
        queued = await enqueue(
            cluster.blobs,
            JetStreamPublisher(cluster.js),
            sender="list-return-1-@example.test-@[]",
            recipients=[f"sub{n}@example.test" for n in range(LIST_SIZE)],
            body=BODY,
            origin=Origin(kind="inject"),
            clock=cluster.clock,
        )
        msg = await cluster.js.get_last_msg(subjects.STREAM_TODO, subjects.TODO)
        assert msg.data is not None
        await send.on_todo(Todo.decode(msg.data))  # SEND-21: one pass, every recipient
        job = await cluster.last_job()
        assert (job.id, job.attempt, job.rcpt_index) == (queued.id, 1, LIST_SIZE - 1)

        for start in range(0, LIST_SIZE, 100):  # local's results, all in the stream at once
            results = [
                Result(
                    id=queued.id,
                    channel="local",
                    rcpt_index=n,
                    attempt=1,
                    outcome="delivered",
                    report="did 0+0+1/\n",
                )
                for n in range(start, start + 100)
            ]
            await asyncio.gather(
                *(
                    JetStreamPublisher(cluster.js).publish(
                        subjects.result("local"), r.encode(), msg_id=r.msg_id()
                    )
                    for r in results
                )
            )
        before = (await cluster.js.stream_info(f"KV_{subjects.KV_QUEUE}")).state.last_seq

        conn = NatsConnection(Settings(nats_url=private_nats.url), "send")
        await conn.start()
        consumer = Consumer(
            conn,
            stream=subjects.STREAM_RESULT,
            durable=subjects.CONSUMER_SEND_RESULT,
            event=Result,
            handle=send.on_result,
            concurrency=64,  # as send runs it
        )
        await consumer.start()
        try:
            async with asyncio.timeout(60):  # one write per result: many minutes

                async def settled() -> bool:
                    pending = await conn.js.consumer_info(
                        subjects.STREAM_RESULT, subjects.CONSUMER_SEND_RESULT
                    )
                    return (
                        await StateStore(lambda: cluster.kv).load(queued.id) is None
                        and not await body_exists(cluster.blobs, queued.id)
                        and pending.num_pending + pending.num_ack_pending == 0
                    )

                while not await settled():  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            info = await conn.js.consumer_info(
                subjects.STREAM_RESULT, subjects.CONSUMER_SEND_RESULT
            )
        finally:
            await consumer.stop()
            await conn.stop()
        after = (await cluster.js.stream_info(f"KV_{subjects.KV_QUEUE}")).state.last_seq
        assert info.num_pending == 0 and info.num_ack_pending == 0  # every result acked
        assert info.num_redelivered == 0  # none deferred ("kept changing", "early")
        writes = after - before  # every write of the record, its removal included
        assert writes <= LIST_SIZE // 20, writes  # at most one write per twenty results


class LosingStore(StateStore):
    """The queue bucket as seen when one write's answer is lost (the connection drops)."""

    def __init__(self, kv: Callable[[], KeyValue]) -> None:
        super().__init__(kv)
        self.lose = 0

    async def update_or_remove(
        self,
        qid: str,
        change: Callable[[MessageState], MessageState | None],
        finished: Callable[[MessageState], bool] | None,
    ) -> tuple[MessageState | None, MessageState | None, bool]:
        if self.lose:
            self.lose -= 1
            self.forget(qid)
            raise Temporary("cannot write queue state: connection lost")
        return await super().update_or_remove(qid, change, finished)

    async def update_at(self, state: MessageState, revision: int) -> bool:
        if self.lose:
            self.lose -= 1
            self.forget(state.id)
            raise Temporary("cannot write queue state: connection lost")
        return await super().update_at(state, revision)

    async def remove_at(self, qid: str, revision: int) -> bool:
        if self.lose:
            self.lose -= 1
            self.forget(qid)
            raise Temporary("cannot remove queue state: connection lost")
        return await super().remove_at(qid, revision)


async def test_send_30_a_lost_write_leaves_every_result_of_it_to_come_again(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """SEND-30: results settled together share one write, so when it is lost every one of
    them is refused (the consumer delivers each again) and none is taken as recorded; given
    again, they are recorded and the message finished."""
    async with send_replicas(private_nats, tmp_path, 1) as cluster:
        (send,) = cluster.replicas
        store = LosingStore(lambda: cluster.kv)
        send._states = store  # the same queue, with a store that loses one write
        queued = await enqueue(
            cluster.blobs,
            JetStreamPublisher(cluster.js),
            sender="joe@far.test",
            recipients=[f"sub{n}@example.test" for n in range(3)],
            body=BODY,
            origin=Origin(kind="inject"),
            clock=cluster.clock,
        )
        msg = await cluster.js.get_last_msg(subjects.STREAM_TODO, subjects.TODO)
        assert msg.data is not None
        await send.on_todo(Todo.decode(msg.data))
        results = [
            Result(
                id=queued.id,
                channel="local",
                rcpt_index=n,
                attempt=1,
                outcome="delivered",
                report="did 0+0+1/\n",
            )
            for n in range(3)
        ]
        store.lose = 1
        outcomes = await asyncio.gather(
            *(send.on_result(r) for r in results), return_exceptions=True
        )
        assert all(isinstance(o, Temporary) for o in outcomes), outcomes
        loaded = await StateStore(lambda: cluster.kv).load(queued.id)
        assert loaded is not None and not any(r.done for r in loaded[0].recipients)
        assert await body_exists(cluster.blobs, queued.id)

        await asyncio.gather(*(send.on_result(r) for r in results))  # delivered again
        assert await StateStore(lambda: cluster.kv).load(queued.id) is None
        assert not await body_exists(cluster.blobs, queued.id)


async def test_send_30_a_result_before_its_record_exists_is_delivered_again(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """The first pass's jobs go out just before the record that says they were (throughput
    #10), so another replica may hold a result of pass 1 while the record is being created: it
    must be delivered again, not dropped, and count once the record exists."""
    async with send_replicas(private_nats, tmp_path, 2) as cluster:
        a, b = cluster.replicas
        todo = await cluster.put()
        early = Result(
            id=todo.id,
            channel="local",
            rcpt_index=0,
            attempt=1,
            outcome="delivered",
            report="did 0+1+0/\n",
        )
        with pytest.raises(Temporary):
            await b.on_result(early)  # the body is there, the record not yet
        assert await body_exists(cluster.blobs, todo.id)

        await a.on_todo(todo)
        first = await cluster.last_job()
        assert (first.id, first.rcpt_index, first.attempt) == (todo.id, 0, 1)
        await b.on_result(early)  # delivered again: now recorded, and the message finished
        assert not await body_exists(cluster.blobs, todo.id)
        assert await StateStore(lambda: cluster.kv).load(todo.id) is None


async def test_send_30_a_result_after_its_record_was_removed_is_not_delivered_again(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """A removal whose answer was lost leaves no record but the body (ARCH-05: record first):
    a result that comes again then is taken as a repeat, not as early, or it would come back
    every few seconds until the orphan sweep."""
    async with send_replicas(private_nats, tmp_path, 1) as cluster:
        (send,) = cluster.replicas
        todo = await cluster.put()
        await send.on_todo(todo)
        first = await cluster.last_job()
        await StateStore(lambda: cluster.kv).remove(todo.id)  # removed; the body not yet
        await send.on_result(Result.for_job(first, "delivered", "did 0+1+0/\n"))  # acked
        assert await StateStore(lambda: cluster.kv).load(todo.id) is None


async def test_arch_06_results_that_leave_nothing_to_decide_take_no_lease(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """Three local recipients whose results come one at a time (throughput #10): the first two
    leave the pass in flight, the third finishes the message. None of them needs a decision, so
    none takes the lease, and the record is written once per result, the last its removal."""
    async with send_replicas(private_nats, tmp_path, 1) as cluster:
        (send,) = cluster.replicas
        queued = await enqueue(
            cluster.blobs,
            JetStreamPublisher(cluster.js),
            sender="joe@far.test",
            recipients=[f"sub{n}@example.test" for n in range(3)],
            body=BODY,
            origin=Origin(kind="inject"),
            clock=cluster.clock,
        )
        msg = await cluster.js.get_last_msg(subjects.STREAM_TODO, subjects.TODO)
        assert msg.data is not None
        await cluster.settle()
        cluster.traffic.reset()

        await send.on_todo(Todo.decode(msg.data))
        for n in range(3):
            assert await body_exists(cluster.blobs, queued.id)  # not finished before the last
            await send.on_result(
                Result(
                    id=queued.id,
                    channel="local",
                    rcpt_index=n,
                    attempt=1,
                    outcome="delivered",
                    report="did 0+1+0/\n",
                )
            )

        await cluster.settle()
        counted = dict(cluster.traffic.counts)
        assert not await body_exists(cluster.blobs, queued.id)
        assert await StateStore(lambda: cluster.kv).load(queued.id) is None
        assert counted.get(f"{subjects.KV_LEASES} write", 0) == 0, counted
        assert counted[f"{subjects.KV_QUEUE} write"] == 4, counted  # created, 2 results, removed
        assert counted.get(f"{subjects.KV_QUEUE} read", 0) == 0, counted


async def test_send_01_a_todo_delivered_the_first_time_is_not_looked_for_in_the_store(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """Throughput #10: ``enqueue()`` stores the body before it publishes the todo (ARCH-01), so
    the todo's first delivery is recorded without a look for the body. A todo put back from the
    shunt after the orphan sweep took its body (CLEAN-03) is still looked for, and dropped:
    no record, no job."""
    async with send_replicas(private_nats, tmp_path, 1) as cluster:
        (send,) = cluster.replicas
        todo = await cluster.put()
        orphan = todo.model_copy(update={"id": new_queue_id(cluster.clock.now)})
        handled: asyncio.Queue[str] = asyncio.Queue()

        async def handle(got: Todo) -> None:
            await send.on_todo(got)
            handled.put_nowait(got.id)

        conn = NatsConnection(Settings(nats_url=private_nats.url), "test-send-todo")
        await conn.start()
        await ensure_consumer(
            conn.js, subjects.STREAM_TODO, subjects.CONSUMER_SEND_TODO, max_ack_pending=4
        )
        consumer = todo_consumer(conn, handle, concurrency=1)
        try:
            await consumer.start()
            assert await asyncio.wait_for(handled.get(), 10) == todo.id
            looks_for_the_first = cluster.blobs.stats
            await cluster.js.publish(subjects.TODO, orphan.encode(), headers=requeue_headers(3))
            assert await asyncio.wait_for(handled.get(), 10) == orphan.id
        finally:
            await consumer.stop()
            await conn.stop()
        states = StateStore(lambda: cluster.kv)
        assert looks_for_the_first == 0
        assert await states.load(todo.id) is not None
        assert cluster.blobs.stats == 1
        assert await states.load(orphan.id) is None
        assert (await cluster.last_job()).id == todo.id  # nothing published for the orphan
