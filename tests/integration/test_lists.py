"""The lists service's handler against a real nats-server, real stores and a DNS server on
loopback (issue #15): hostile list jobs, expired cookies, DMARC's From rewrite, and that a
refused request loses nothing (the handed-over copy stays until the job is carried out)."""

from __future__ import annotations

import asyncio
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
from qmesh.contract.errors import Temporary
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


async def _change(world: World, **fields: object) -> ListRecord:
    lists = state.ListDirectory(world.lists._directory())
    changed = await lists.update(DOMAIN, "talk", lambda r: r.changed(**fields))
    assert changed is not None
    return changed


def _replica(world: World) -> Lists:
    """A second lists replica on the same NATS and store (the timer runs in each)."""
    w = world.lists
    other = Lists(
        bus=w._bus,
        queue=w._queue,
        directory=w._directory,
        kv=w._kv,
        deliveries=w._deliveries,
        dmarc=w._dmarc,
    )
    other._clock = lambda: world.now[0]
    return other


async def test_a_quiet_lists_digest_goes_out_once_by_timer_with_two_replicas(world: World) -> None:
    """The timer (ezmlm-get -d from cron): no new post, the oldest waited digest_hours; two
    replicas run their rounds at once and the digest subscriber gets one RFC 1153 digest."""
    await _change(world, digest=True, digest_hours=1.0, digest_format="rfc1153")
    await state.subscribe(world.kv, world.record.address, "dee@far.test", "digest")
    post = b"From: ann@relaxed.test\nSubject: quiet\nDate: Sun, 6 Dec 2026 05:00:00 +0000\n\n"
    await world.job("", "ann@relaxed.test", post + b"one line\n" + b"-" * 30 + b"\nafter\n")
    await asyncio.gather(world.lists.sweep(), _replica(world).sweep())
    await settle()
    assert await world.sent("dee@far.test") == []  # not yet: the hour has not passed
    world.now[0] += 3601
    await asyncio.gather(world.lists.sweep(), _replica(world).sweep())
    await settle()
    (digest,) = await world.sent("dee@far.test")
    assert digest.get_content_type() == "text/plain"
    assert str(digest["Subject"]).startswith("talk Digest V")
    text = digest.get_content()
    assert "Today's Topics:" in text and "   1. quiet" in text
    assert "\n" + "-" * 70 + "\n" in text
    assert "From: ann@relaxed.test\nSubject: quiet\nMessage: 1\n\none line\n" in text
    assert "\n " + "-" * 30 + "\nafter\n" in text  # the post's own separator line is indented
    assert text.rstrip().endswith("*" * 20)
    world.now[0] += 7200
    await world.lists.sweep()
    await settle()
    assert len(await world.sent("dee@far.test")) == 1  # nothing waits any more


async def test_a_held_post_nobody_moderates_goes_back_to_its_poster(world: World) -> None:
    """ezmlm-clean: after moderation_hours the held post is refused to its poster and gone;
    a moderator's accept after that finds nothing."""
    await _change(world, moderated=True, moderators=["mod@far.test"], moderation_hours=2.0)
    await state.subscribe(world.kv, world.record.address, "joe@far.test")
    await world.job("", "ann@relaxed.test", b"From: ann@relaxed.test\nSubject: wait\n\nheld\n")
    await settle()
    (request,) = await world.sent("mod@far.test")
    accept = str(request["Reply-To"]).split("@")[0].removeprefix("talk-")
    world.now[0] += 3600
    await world.lists.sweep()
    await settle()
    assert await world.sent("ann@relaxed.test") == []  # an hour: still waiting
    world.now[0] += 3601
    await asyncio.gather(world.lists.sweep(), _replica(world).sweep())
    await settle()
    (back,) = await world.sent("ann@relaxed.test")
    text, enclosed = back.iter_parts()
    assert "no moderator accepted your message within 2 hours" in text.get_content()
    assert "held" in enclosed.as_string()  # the post goes back with it (ezmlm-clean -m)
    backs = [t for t in world.todos if "ann@relaxed.test" in t.envelope.recipients]
    assert [t.envelope.sender for t in backs] == [""]
    assert await state.held(world.kv, world.record.address) == {}
    await world.job(accept, "mod@far.test")
    await settle()
    _, late = await world.sent("mod@far.test")
    assert "accepted or rejected already" in late.get_content()
    assert await world.sent("joe@far.test") == []  # never posted


async def test_a_list_job_failing_with_a_bug_is_shunted_not_retried_for_ever(
    world: World, private_nats: NatsServer
) -> None:
    """Hardening #11 for lists: a post whose handling always fails with a bug (here the DMARC
    check breaks) goes to ``qmesh.shunt.lists`` after a few deliveries, is listed by ``qmesh
    queue shunted``, and is carried out once requeued after the fix."""
    from qmesh.bus.connection import NatsConnection
    from qmesh.bus.consumer import Consumer
    from qmesh.runtime.settings import Settings
    from tests.integration.test_shunt import queue_cli, wait_for

    await state.subscribe(world.kv, world.record.address, "joe@far.test")
    broken = [True]

    async def dmarc(domain: str) -> bool:
        if broken[0]:
            raise KeyError("a bug in the DMARC check")
        return False

    world.lists._dmarc = dmarc
    conn = NatsConnection(Settings(nats_url=private_nats.url), "test-lists-shunt")
    await conn.start()
    shunted: list[int] = []
    consumer = Consumer(
        conn,
        stream=subjects.STREAM_LISTS,
        durable=subjects.CONSUMER_LISTS,
        event=ListJob,
        handle=world.lists.handle,
        concurrency=2,
        max_failures=3,
        bug_retry_delay=0.1,
        on_shunt=lambda: shunted.append(1),
    )
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.subscribed.wait(), 10)
        qid = new_queue_id()
        await world.queue.put(in_key(qid, 0), b"From: a@relaxed.test\nSubject: poison\n\nx\n")
        job = ListJob(
            id=qid,
            rcpt_index=0,
            sender="a@relaxed.test",
            recipient=f"talk@{DOMAIN}",
            domain=DOMAIN,
            name="talk",
            ext="",
            body=in_key(qid, 0),
            handed_at=world.now[0],
        )
        await conn.js.publish(subjects.JOB_LISTS, job.encode())
        await wait_for(lambda: shunted)
        await asyncio.sleep(0.5)
        assert len(shunted) == 1
        assert (await conn.js.stream_info(subjects.STREAM_LISTS)).state.messages == 0
        code, out, _ = await queue_cli(private_nats.url, "shunted")
        (line,) = out.splitlines()
        assert "qmesh.job.lists" in line and qid in line and "after 3 deliveries" in line
        assert "KeyError" in line
        assert await world.sent("joe@far.test") == []  # not posted, and the copy is kept
        assert await world.queue.get(job.body)

        broken[0] = False
        code, out, _ = await queue_cli(private_nats.url, "requeue", line.split()[0])
        assert code == 0 and "to qmesh.job.lists" in out
        await wait_for(lambda: any("joe@far.test" in t.envelope.recipients for t in world.todos))
        (posted,) = await world.sent("joe@far.test")
        assert posted["Subject"] == "poison"
    finally:
        await consumer.stop()
        await conn.stop()


async def test_a_bouncing_subscriber_is_warned_with_the_bounced_numbers_first(
    world: World,
) -> None:
    """ezmlm-warn's first stage: the warning names the posts that bounced and how to get them
    (the list keeps an archive); its bounce brings the probe, the probe's the removal."""
    await _change(world, bounce_period=0)
    await state.subscribe(world.kv, world.record.address, "joe@far.test")
    await world.job("return-3-joe=far.test", "")
    await settle()
    (warning,) = await world.sent("joe@far.test")
    assert warning["Subject"] == "warning from talk@lists.test"
    assert "missed these messages: 3" in warning.get_content()
    assert "talk-get.N@lists.test" in warning.get_content()
    assert world.todos[-1].envelope.sender == "talk-return-warn-@lists.test-@[]"  # VERP'd
    await world.job("return-warn-joe=far.test", "")
    await settle()
    _, probe = await world.sent("joe@far.test")
    assert probe["Subject"] == "bounce probe for talk@lists.test"
    await world.job("return-probe-joe=far.test", "")
    assert (await state.subscribers(world.kv, world.record.address)).sub == ()


async def test_a_personal_list_gives_each_subscriber_its_own_one_click_link(
    world: World,
) -> None:
    """--personal (Mailman's personalize): a copy per subscriber whose RFC 8058 link names
    that subscriber; a fan-out cut short by an outage is taken up again where its last note
    left it, so nobody gets the post more than once here (a note after every copy)."""
    from qmesh.bus.base import PublishFailed
    from qmesh.lists import oneclick

    await _change(world, personal=True)
    people = [f"p{i}@far.test" for i in range(5)]
    await state.subscribe_many(world.kv, world.record.address, people)
    world.lists._one_click_base = "https://admin.lists.test/"
    world.lists._progress_every = 1
    real, calls = world.lists._bus, [0]

    class Flaky:
        async def publish(self, subject: str, payload: bytes, *, msg_id: str) -> None:
            calls[0] += 1
            if calls[0] == 4:
                raise PublishFailed("NATS went away")
            await real.publish(subject, payload, msg_id=msg_id)

    world.lists._bus = Flaky()
    body = b"From: a@relaxed.test\nSubject: for you\n\nhello\n"
    qid = new_queue_id()
    await world.queue.put(in_key(qid, 0), body)
    job = ListJob(
        id=qid,
        rcpt_index=0,
        sender="a@relaxed.test",
        recipient=f"talk@{DOMAIN}",
        domain=DOMAIN,
        name="talk",
        ext="",
        body=in_key(qid, 0),
        handed_at=world.now[0],
    )
    with pytest.raises(Temporary):
        await world.lists.handle(job)  # three copies queued, then the outage
    await world.lists.handle(job)  # delivered again: the last two
    await settle()
    key = await state.cookie_key(world.kv)
    for person in people:
        (copy,) = await world.sent(person)
        assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = str(copy["List-Unsubscribe"]).split(">")[0].lstrip("<")
        assert link.startswith("https://admin.lists.test/unsubscribe/")
        found = oneclick.check(key, link.rsplit("/", 1)[1], world.now[0])
        assert (found.list_address, found.address) == ("talk@lists.test", person)
    assert all(len(t.envelope.recipients) == 1 for t in world.todos)
    assert all(t.envelope.sender.endswith("-@[]") for t in world.todos)  # VERP'd
