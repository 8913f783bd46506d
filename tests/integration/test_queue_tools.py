"""``qmesh queue stat|list|show|flush`` against a real nats-server and a real send.

Messages go in through ``enqueue()``; send, built by its own ``app.build``, preprocesses them
and publishes their jobs. No local or remote runs: the test answers for them by publishing
results on ``qmesh.result.*`` as they would. Each test has a nats-server of its own, because
send consumes every todo of ``QMESH_TODO`` and the counts must be this test's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from qmesh.bus.jetstream import JetStreamPublisher
from qmesh.bus.provision import provision_streams
from qmesh.cli.main import parser
from qmesh.cli.natsd import NatsServer
from qmesh.cli.queueadmin import run_queue
from qmesh.contract import subjects
from qmesh.contract.events import Flushed, FlushRequest, Origin, RemoteJob, Result
from qmesh.contract.ids import QueueId
from qmesh.contract.queue import enqueue
from qmesh.contract.subjects import Channel
from qmesh.runtime.service import Running, start
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobStore
from qmesh.store.factory import open_store
from services.send.app import build
from services.send.state import MessageState
from services.send.store import StateStore

pytestmark = pytest.mark.integration

WAIT = 20.0
BODY = b"Subject: hello\n\nhello\n"


@pytest.fixture
def settings(private_nats: NatsServer, tmp_path: Path, unique: str) -> Settings:
    control = tmp_path / "control"
    control.mkdir()
    (control / "me").write_text("mx.example.test\n")
    (control / "locals").write_text("example.test\n")
    return Settings(
        nats_url=private_nats.url,
        store=f"file://{tmp_path / 'store'}",
        queue_bucket=f"queue-{unique}",
        control=control,
        http_host="127.0.0.1",
        http_port=0,
    )


@dataclass
class Queue:
    """The queue around a send: how to put messages in and look at their records."""

    settings: Settings
    nc: NATS
    blobs: BlobStore
    tmp: Path
    sends: list[Running]

    async def start_send(self) -> None:
        self.sends.append(await start(await build(self.settings), self.settings))

    async def enqueue(self, *recipients: str) -> QueueId:
        queued = await enqueue(
            self.blobs,
            JetStreamPublisher(self.nc.jetstream()),
            sender="joe@far.test",
            recipients=recipients,
            body=BODY,
            origin=Origin(kind="inject"),
        )
        return queued.id

    async def record(self, qid: str) -> MessageState | None:
        kv = await self.nc.jetstream().key_value(subjects.KV_QUEUE)
        loaded = await StateStore(lambda: kv).load(qid)
        return None if loaded is None else loaded[0]

    async def wait_record(
        self, qid: str, ready: Callable[[MessageState], bool], what: str
    ) -> MessageState:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            state = await self.record(qid)
            if state is not None and ready(state):
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"{qid}: {what} not reached; last {await self.record(qid)}")

    async def result(
        self, qid: str, channel: Channel, index: int, attempt: int, outcome: str, report: str
    ) -> None:
        """What local or remote would publish for one delivery (SEND-30)."""
        result = Result.model_validate(
            {
                "id": qid,
                "channel": channel,
                "rcpt_index": index,
                "attempt": attempt,
                "outcome": outcome,
                "report": report,
            }
        )
        await JetStreamPublisher(self.nc.jetstream()).publish(
            subjects.result(channel), result.encode(), msg_id=result.msg_id()
        )

    async def cli(self, *argv: str) -> tuple[int, str, str]:
        """``qmesh ARGV`` in this process, parsed by the real parser."""
        args: argparse.Namespace = parser().parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        code = await run_queue(
            args, environ={"QMESH_NATS_URL": self.settings.nats_url}, stdout=out, stderr=err
        )
        return code, out.getvalue(), err.getvalue()

    async def command(self, *argv: str) -> tuple[int, str, str]:
        """``python -m qmesh.cli.main ARGV`` as an operator runs it, NATS from the environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("QMESH_")}
        env["QMESH_NATS_URL"] = self.settings.nats_url
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "qmesh.cli.main",
            *argv,
            env=env,
            cwd=self.tmp,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def queue(settings: Settings, tmp_path: Path) -> AsyncIterator[Queue]:
    nc = await nats.connect(settings.nats_url)
    await provision_streams(nc.jetstream())
    blobs = open_store(settings, settings.queue_bucket)
    q = Queue(settings, nc, blobs, tmp_path, [])
    try:
        yield q
    finally:
        for running in q.sends:
            await running.stop()
        await nc.close()


def in_flight(channel: Channel, attempt: int = 1) -> Callable[[MessageState], bool]:
    def ready(state: MessageState) -> bool:
        p = state.pass_of(channel)
        return p.attempt == attempt and bool(p.inflight)

    return ready


def waiting(channel: Channel) -> Callable[[MessageState], bool]:
    """The channel's pass is over and its next attempt lies ahead (SEND-20)."""

    def ready(state: MessageState) -> bool:
        p = state.pass_of(channel)
        return p.attempt >= 1 and not p.inflight and bool(state.pending(channel))

    return ready


async def jobs_of(
    nc: NATS, channel: Channel
) -> tuple[list[RemoteJob], Callable[[], Awaitable[None]]]:
    """Every remote job published from now on (a core subscription sees JetStream publishes)."""
    seen: list[RemoteJob] = []

    async def on_job(msg: Msg) -> None:
        seen.append(RemoteJob.decode(msg.data))

    sub = await nc.subscribe(subjects.job(channel), cb=on_job)
    return seen, sub.unsubscribe


async def test_qmail_qstat_counts_todo_events_then_records(queue: Queue) -> None:
    assert await queue.cli("queue", "stat") == (
        0,
        "messages in queue: 0\nmessages in queue but not yet preprocessed: 0\n",
        "",
    )
    await queue.enqueue("bob@far.test")
    await queue.enqueue("al@example.test", "bob@far.test")
    code, out, _ = await queue.command("queue", "stat")  # no send yet: todo events only
    assert (code, out) == (
        0,
        "messages in queue: 2\nmessages in queue but not yet preprocessed: 2\n",
    )

    await queue.start_send()
    deadline = time.monotonic() + WAIT
    while (await queue.cli("queue", "stat"))[1] != (
        "messages in queue: 2\nmessages in queue but not yet preprocessed: 0\n"
    ):
        assert time.monotonic() < deadline, await queue.cli("queue", "stat")
        await asyncio.sleep(0.05)


async def test_qmail_qread_list_and_show_follow_the_record(queue: Queue) -> None:
    await queue.start_send()
    first = await queue.enqueue("al@example.test", "bob@far.test", "carl@far.test")
    second = await queue.enqueue("dora@far.test")
    for qid in (first, second):
        await queue.wait_record(qid, in_flight("remote"), "remote pass in flight")
    state = await queue.wait_record(first, in_flight("local"), "local pass in flight")

    code, out, err = await queue.cli("queue", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{first}  ") and lines[0].endswith("  from <joe@far.test>")
    assert f" {state.size} bytes " in lines[0]
    assert [line.split()[:3] for line in lines[1:4]] == [
        ["local", "in", "flight"],
        ["remote", "in", "flight"],
        ["remote", "in", "flight"],
    ]
    assert lines[1].endswith("  al@example.test") and lines[3].endswith("  carl@far.test")
    assert lines[4].startswith(f"{second}  ") and lines[5].endswith("  dora@far.test")
    assert len(lines) == 6

    # remote answers for bob (deferred) and carl (failed); the local delivery is still out,
    # so carl's failure waits in the record for the bounce (BOUNCE-01)
    await queue.result(first, "remote", 1, 1, "deferred", "Connected to mx.far.test but busy.")
    await queue.result(first, "remote", 2, 1, "failed", "Sorry, no mailbox here. (#5.1.1)")
    state = await queue.wait_record(first, waiting("remote"), "remote pass over")
    state = await queue.wait_record(first, lambda s: bool(s.bounces), "failure recorded")

    code, out, _ = await queue.cli("queue", "list")
    lines = out.splitlines()
    next_at = state.pass_of("remote").next_at
    assert next_at == state.birth + 400  # SEND-20, remote: 400 s after birth
    next_text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(next_at))
    assert lines[2].split() == ["remote", "not", "done", "next", *next_text.split(), "bob@far.test"]
    assert lines[3].split() == ["remote", "done", "carl@far.test"]

    code, out, err = await queue.cli("queue", "show", first)
    assert (code, err) == (0, "")
    assert out.startswith(f"message {first}\n  qp        {state.qp}\n")
    assert "  origin    inject\n" in out
    assert "  1   remote  not done   bob@far.test\n" in out
    assert "          Connected to mx.far.test but busy.\n" in out
    assert out.endswith("        Sorry, no mailbox here. (#5.1.1)\n")
    assert "failures not yet bounced:\n  2   <carl@far.test> at " in out


async def test_show_of_an_unknown_message_is_refused(queue: Queue) -> None:
    absent = "1732510000123.0123456789abcdef"
    code, out, err = await queue.cli("queue", "show", absent)  # no bucket yet
    assert (code, out) == (1, "")
    assert err.startswith(f"qmesh queue show: no message {absent} in the queue")
    await queue.start_send()
    code, _, err = await queue.command("queue", "show", absent)
    assert code == 1 and f"no message {absent}" in err
    code, _, err = await queue.command("queue", "show", "../../etc/passwd")
    assert code == 2 and "not a queue id" in err


async def test_send_25_flush_makes_a_deferred_message_due_now(queue: Queue) -> None:
    await queue.start_send()
    qid = await queue.enqueue("bob@far.test")
    await queue.wait_record(qid, in_flight("remote"), "first pass")
    await queue.result(qid, "remote", 0, 1, "deferred", "421 try later")
    before = await queue.wait_record(qid, waiting("remote"), "first pass over")
    assert before.pass_of("remote").next_at == before.birth + 400 > time.time()
    jobs, stop = await jobs_of(queue.nc, "remote")

    flushed_at = time.time()
    code, out, err = await queue.command("queue", "flush")
    assert (code, out, err) == (0, "flushed: 1 of 1 messages due for delivery now\n", "")

    after = await queue.wait_record(qid, in_flight("remote", attempt=2), "flushed pass")
    assert after.birth == before.birth  # SEND-25: birth is not reset
    assert after.pass_of("remote").started >= flushed_at
    assert after.pass_of("remote").next_at == after.birth + 400  # the schedule goes on (SEND-20)
    deadline = time.monotonic() + WAIT
    while not jobs:
        assert time.monotonic() < deadline, "no job published after the flush"
        await asyncio.sleep(0.05)
    await stop()
    assert [(j.id, j.rcpt_index, j.attempt) for j in jobs] == [(qid, 0, 2)]

    # in flight now: a second flush has nothing to move
    code, out, _ = await queue.cli("queue", "flush")
    assert (code, out) == (0, "flushed: 0 of 1 messages due for delivery now\n")


async def test_send_25_flush_without_a_running_send_says_so(queue: Queue) -> None:
    started = time.monotonic()
    code, out, err = await queue.cli("queue", "flush")
    assert (code, out) == (111, "")
    assert (
        err == "qmesh queue flush: no send is running (nobody listens on qmesh.admin.send.flush)\n"
    )
    assert time.monotonic() - started < 5  # no-responders, not a timeout


async def test_send_25_two_replicas_one_answer_one_flush(queue: Queue) -> None:
    await queue.start_send()
    await queue.start_send()
    qid = await queue.enqueue("bob@far.test")
    await queue.wait_record(qid, in_flight("remote"), "first pass")
    await queue.result(qid, "remote", 0, 1, "deferred", "421 try later")
    await queue.wait_record(qid, waiting("remote"), "first pass over")

    answers: list[Flushed] = []

    async def on_answer(msg: Msg) -> None:
        answers.append(Flushed.decode(msg.data))

    inbox = queue.nc.new_inbox()
    sub = await queue.nc.subscribe(inbox, cb=on_answer)
    await queue.nc.publish(subjects.ADMIN_SEND_FLUSH, FlushRequest().encode(), reply=inbox)
    await queue.wait_record(qid, in_flight("remote", attempt=2), "flushed pass")
    await asyncio.sleep(1.0)  # time for a second answer, which must not come
    await sub.unsubscribe()
    assert answers == [Flushed(due=1, queued=1)]
    state = await queue.record(qid)
    assert state is not None and state.pass_of("remote").attempt == 2
