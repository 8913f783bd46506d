"""The lists service's handler against a real nats-server, real stores and a DNS server on
loopback (issue #15): hostile list jobs, expired cookies, DMARC's From rewrite, and that a
refused request loses nothing (the handed-over copy stays until the job is carried out)."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from pydantic import ValidationError

from qmesh.bus.jetstream import JetStreamPublisher
from qmesh.cli.natsd import NatsServer
from qmesh.contract import subjects
from qmesh.contract.events import Todo
from qmesh.contract.ids import new_queue_id
from qmesh.lists import state
from qmesh.lists.events import ListJob
from qmesh.lists.names import in_key
from qmesh.lists.records import ListRecord
from qmesh.store.base import BlobNotFound, BlobStore
from qmesh.store.files import FileStore
from qmesh.store.keys import body_key
from services.lists import cookie
from services.lists.consumer import Lists
from services.lists.dmarc import strict_check
from tests.dnsserver import DnsFixture

pytestmark = [pytest.mark.integration]

DOMAIN = "lists.test"


@dataclass
class World:
    lists: Lists
    queue: BlobStore
    kv: KeyValue
    record: ListRecord
    todos: list[Todo] = field(default_factory=list)
    now: list[float] = field(default_factory=lambda: [time.time()])

    async def job(self, ext: str, sender: str, body: bytes = b"Subject: x\n\nx\n") -> ListJob:
        qid = new_queue_id()
        await self.queue.put(in_key(qid, 0), body)
        job = ListJob(
            id=qid,
            rcpt_index=0,
            sender=sender,
            recipient=f"talk-{ext}@{DOMAIN}" if ext else f"talk@{DOMAIN}",
            domain=DOMAIN,
            name="talk",
            ext=ext,
            body=in_key(qid, 0),
            handed_at=self.now[0],
        )
        await self.lists.handle(job)
        return job

    async def sent(self, to: str) -> list[email.message.EmailMessage]:
        found = []
        for todo in self.todos:
            if to in todo.envelope.recipients:
                raw = await self.queue.get(body_key(todo.id))
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                assert isinstance(msg, email.message.EmailMessage)
                found.append(msg)
        return found


@pytest_asyncio.fixture
async def world(private_nats: NatsServer, tmp_path: Path) -> AsyncIterator[World]:
    dns_server = DnsFixture(
        {
            ("_dmarc.strict.test", "TXT"): ['"v=DMARC1; p=reject; rua=mailto:d@strict.test"'],
            ("_dmarc.relaxed.test", "TXT"): ['"v=DMARC1; p=none"'],
        }
    )
    port = dns_server.start()
    nc = await nats.connect(private_nats.url)
    js = nc.jetstream()
    dkv = await js.key_value(subjects.KV_DIRECTORY)
    kv = await js.key_value(subjects.KV_LISTS)
    deliveries = await js.key_value(subjects.KV_DELIVERIES)
    queue = FileStore(tmp_path / "store", "queue")
    record = ListRecord(domain=DOMAIN, name="talk", archive=True, subscribers_only=False)
    assert await state.ListDirectory(dkv).create(record)
    lists = Lists(
        bus=JetStreamPublisher(js),
        queue=queue,
        directory=lambda: dkv,
        kv=lambda: kv,
        deliveries=lambda: deliveries,
        dmarc=strict_check(f"127.0.0.1:{port}"),
    )
    w = World(lists, queue, kv, record)
    lists._clock = lambda: w.now[0]  # the cookie tests move time on

    async def collect(msg: Msg) -> None:
        w.todos.append(Todo.decode(msg.data))

    sub = await nc.subscribe(subjects.TODO, cb=collect)
    try:
        yield w
    finally:
        await sub.unsubscribe()
        await nc.close()
        dns_server.stop()


async def settle() -> None:
    import asyncio

    await asyncio.sleep(0.3)  # the core subscription sees the todo events


async def test_expired_and_foreign_cookies_are_refused(world: World) -> None:
    key = await state.cookie_key(world.kv)
    ext = cookie.confirm_ext(key, "sc", world.record.address, "joe@far.test", world.now[0])
    world.now[0] += cookie.LIFETIME + 1
    await world.job(ext, "joe@far.test")
    world.now[0] -= cookie.LIFETIME + 1
    other = cookie.confirm_ext(key, "sc", "other@lists.test", "joe@far.test", world.now[0])
    await world.job(other, "joe@far.test")
    unsub = cookie.confirm_ext(key, "uc", world.record.address, "joe@far.test", world.now[0])
    await world.job("sc" + unsub[2:], "joe@far.test")  # an unsubscribe cookie as subscribe
    await settle()
    texts = [m.get_content() for m in await world.sent("joe@far.test")]
    assert len(texts) == 3
    assert "has expired" in texts[0]
    assert "not valid for this list and address" in texts[1]
    assert "not valid for this list and address" in texts[2]
    assert (await state.subscribers(world.kv, world.record.address)).sub == ()


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("ann\r\nBcc: victim=far.test", "control character"),
        ("a" * 600 + "=far.test", "longer than 254 bytes"),
        ("no-at-sign", "not of the form user@domain"),
    ],
    ids=["crlf", "long", "no-at"],
)
async def test_a_bad_subscription_address_is_refused_clearly(
    world: World, target: str, why: str
) -> None:
    job = await world.job(f"subscribe-{target}", "asker@far.test")
    await settle()
    (refusal,) = await world.sent("asker@far.test")
    assert refusal["Subject"] == "refused by talk@lists.test"
    assert why in refusal.get_content()
    assert [t.envelope.sender for t in world.todos] == [""]  # from <>, nothing else queued
    assert (await state.subscribers(world.kv, world.record.address)).sub == ()
    with pytest.raises(BlobNotFound):  # carried out: the hand-over copy is gone
        await world.queue.get(job.body)


def test_a_10kb_address_never_becomes_a_list_job() -> None:
    """ADDR-02: smtpd refuses such a path; a forged event with one fails validation."""
    with pytest.raises(ValidationError, match="longer than 1000 bytes"):
        ListJob(
            id=new_queue_id(),
            rcpt_index=0,
            sender="a@far.test",
            recipient="talk-subscribe-" + "a" * 10_000 + "=far.test@lists.test",
            domain=DOMAIN,
            name="talk",
            ext="subscribe",
            body=in_key(new_queue_id(), 0),
            handed_at=0.0,
        )


async def test_a_job_carried_out_twice_sends_once(world: World) -> None:
    await state.subscribe(world.kv, world.record.address, "joe@far.test")
    body = b"From: a@relaxed.test\nSubject: once\n\nonce\n"
    job = await world.job("", "a@relaxed.test", body)
    await world.queue.put(job.body, body)  # redelivered after a crash: the copy is back
    await world.lists.handle(job)
    await settle()
    assert len(await world.sent("joe@far.test")) == 1


async def test_dmarc_reject_domain_gets_from_rewritten(world: World) -> None:
    await state.subscribe(world.kv, world.record.address, "joe@far.test")
    await world.job("", "ann@strict.test", b"From: Ann <ann@strict.test>\nSubject: s\n\nbody\n")
    await world.job("", "bob@relaxed.test", b"From: Bob <bob@relaxed.test>\nSubject: r\n\nbody\n")
    await settle()
    strict, relaxed = await world.sent("joe@far.test")
    assert strict["From"].addresses[0].addr_spec == "talk@lists.test"
    assert "Ann" in str(strict["From"])
    assert strict["Reply-To"].addresses[0].addr_spec == "ann@strict.test"
    assert relaxed["From"].addresses[0].addr_spec == "bob@relaxed.test"
    assert relaxed["Reply-To"] is None


async def test_archive_get_and_bounces_are_never_answered(world: World) -> None:
    await state.subscribe(world.kv, world.record.address, "joe@far.test")
    await world.job("", "x@relaxed.test", b"From: x@relaxed.test\nSubject: kept\n\nkept body\n")
    await world.job("get.1", "joe@far.test")
    await world.job("get.9", "joe@far.test")
    await world.job("help", "")  # a bounce to help: no answer
    await world.job("subscribe", "#@[]")
    await settle()
    got = await world.sent("joe@far.test")
    assert [str(m["Subject"]) for m in got] == [
        "kept",
        "talk@lists.test archive message 1",
        "refused by talk@lists.test",
    ]
    assert "kept body" in got[1].as_string()
    assert len(world.todos) == 3


async def test_owner_mail_goes_to_the_owner_unchanged(world: World) -> None:
    body = b"Subject: question\n\nwho runs this?\n"
    await world.job("owner", "curious@far.test", body)
    await settle()
    (todo,) = world.todos
    assert todo.envelope.recipients == ("postmaster@lists.test",)  # no owner set: postmaster
    assert todo.envelope.sender == "curious@far.test"
    assert (await world.queue.get(body_key(todo.id))).endswith(body)
