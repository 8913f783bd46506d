"""local against a real nats-server and real object stores (S3 and the directory store).

The service is built by its own ``app.build`` and started by the runtime; jobs are published
onto ``qmesh.job.local`` as send would, results are read from ``qmesh.result.local`` and
forwards from ``qmesh.todo`` (core subscriptions, filtered by queue id or by this test's own
domain, which is unique per test).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from qmesh.contract import subjects
from qmesh.contract.events import LocalJob, RcptCheck, RcptVerdict, Result, Todo
from qmesh.contract.ids import QueueId, new_qp, new_queue_id
from qmesh.directory import admin
from qmesh.directory.namespaces import Target
from qmesh.directory.records import AccountRecord, DomainRecord
from qmesh.directory.store import Directory
from qmesh.runtime.service import Running, start
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobStore
from qmesh.store.factory import open_store
from qmesh.store.keys import body_key
from services.local.app import build
from services.local.consumer import NO_MESSAGE
from tests.servers import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MESSAGE = b"Received: from client\nSubject: hello\n\nhello world\n"
WAIT = 20.0


@dataclass
class Local:
    """A running local service and handles on everything around it."""

    running: Running
    nc: NATS
    js: JetStreamContext
    directory: Directory
    queue: BlobStore
    mail: BlobStore
    marker: str  # in every domain of this module run, to clean the streams afterwards


@pytest.fixture(scope="module", params=["file", "s3"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def settings(
    store_kind: str,
    nats_url: str,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp(f"local-{store_kind}")
    control = root / "control"
    control.mkdir()
    (control / "me").write_text("mx.local.test\n")
    (control / "programdelivery").write_text("1\n")
    token = uuid.uuid4().hex[:8]
    common = {
        "nats_url": nats_url,
        "control": control,
        "queue_bucket": f"lq-{token}",
        "mail_bucket": f"lm-{token}",
        "http_host": "127.0.0.1",
        "http_port": 0,
    }
    if store_kind == "file":
        yield Settings(store=f"file://{root / 'store'}", **common)  # type: ignore[arg-type]
    else:
        yield Settings(
            store="s3",
            s3_endpoint=s3_server.endpoint,
            s3_access_key=s3_server.access_key,
            s3_secret_key=s3_server.secret_key,
            **common,  # type: ignore[arg-type]
        )


async def _delete_marked(js: JetStreamContext, stream: str, marker: str) -> None:
    """Remove this module's leftovers (forwards, results) from a work-queue stream."""
    info = await js.stream_info(stream)
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except Exception:
            continue
        if msg.data and marker.encode() in msg.data:
            await js.delete_msg(stream, seq)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local(settings: Settings) -> AsyncIterator[Local]:
    running = await start(await build(settings), settings)
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream()
    directory = await Directory.open(js)
    marker = f"m{uuid.uuid4().hex[:8]}"
    queue = open_store(settings, settings.queue_bucket)
    mail = open_store(settings, settings.mail_bucket)
    await queue.ping()  # creates the S3 buckets
    await mail.ping()
    try:
        yield Local(running, nc, js, directory, queue, mail, marker)
    finally:
        await running.stop()
        for stream in (subjects.STREAM_TODO, subjects.STREAM_RESULT):
            await _delete_marked(js, stream, marker)
        await nc.close()


@pytest.fixture
def domain(local: Local) -> str:
    return f"{local.marker}{uuid.uuid4().hex[:8]}.test"


async def add_domain(local: Local, name: str, rules: dict[str, str] | None = None) -> None:
    await local.directory.create_domain(DomainRecord(name=name, rules=rules or {}))


async def add_account(local: Local, domain: str, name: str, **fields: object) -> None:
    record = AccountRecord(domain=domain, name=name, **fields)
    await local.directory.create_account(record)


class Watch:
    """Core subscriptions on results and todos, opened before a job is published."""

    def __init__(self) -> None:
        self.results: asyncio.Queue[Result] = asyncio.Queue()
        self.todos: asyncio.Queue[Todo] = asyncio.Queue()

    async def on_result(self, msg: Msg) -> None:
        self.results.put_nowait(Result.decode(msg.data))

    async def on_todo(self, msg: Msg) -> None:
        self.todos.put_nowait(Todo.decode(msg.data))


async def deliver(
    local: Local,
    recipient: str,
    *,
    sender: str = "sender@remote.test",
    message: bytes = MESSAGE,
    namespace: str | None = None,
    rcpt_index: int = 0,
    attempt: int = 1,
    qid: QueueId | None = None,
    copies: int = 1,
    queued: bool = True,
) -> tuple[LocalJob, list[Result], list[Todo]]:
    """Queue ``message`` and publish its job (``copies`` times, as JetStream redelivery would);
    return the results and the forwards whose envelope mentions this test's domain."""
    qid = qid or new_queue_id()
    if queued and not await _exists(local.queue, body_key(qid)):
        await local.queue.put(body_key(qid), message)
    job = LocalJob(
        id=qid,
        qp=new_qp(),
        sender=sender,
        recipient=recipient,
        rcpt_index=rcpt_index,
        attempt=attempt,
        size=len(message),
        namespace=namespace or recipient.rpartition("@")[2].lower(),
    )
    watch = Watch()
    subs = [
        await local.nc.subscribe(subjects.RESULT_LOCAL, cb=watch.on_result),
        await local.nc.subscribe(subjects.TODO, cb=watch.on_todo),
    ]
    await local.nc.flush()
    results: list[Result] = []
    try:
        for copy in range(copies):
            await local.js.publish(
                subjects.JOB_LOCAL, job.encode(), headers={"Nats-Msg-Id": f"{job.msg_id()}.{copy}"}
            )
            async with asyncio.timeout(WAIT):
                while True:
                    result = await watch.results.get()
                    if (result.id, result.rcpt_index, result.attempt) == (
                        job.id,
                        job.rcpt_index,
                        job.attempt,
                    ):
                        results.append(result)
                        break
        await asyncio.sleep(0.2)  # a forward is published before the result; let it arrive
    finally:
        for sub in subs:
            await sub.unsubscribe()
    todos = []
    while not watch.todos.empty():
        todo = watch.todos.get_nowait()
        if any(r.endswith("@" + job.namespace) for r in todo.envelope.recipients):
            todos.append(todo)
    return job, results, todos


async def _exists(store: BlobStore, key: str) -> bool:
    return bool(await store.list(key))


async def mailbox(local: Local, domain: str, account: str) -> dict[str, bytes]:
    return {
        info.key: await local.mail.get(info.key)
        for info in await local.mail.list(f"{domain}/{account}/")
    }


# -- delivery into mailboxes ------------------------------------------------------------------


async def test_default_delivery_writes_the_inbox(local: Local, domain: str) -> None:
    """LOCAL-12, LOCAL-20, LOCAL-21, LOCAL-24, LOCAL-26, LOCAL-32, LOCAL-60."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob")
    _, [result], todos = await deliver(local, f"Bob@{domain}", sender="a b@remote.test")
    assert (result.outcome, result.report) == ("delivered", "did 1+0+0\n")
    assert todos == []
    [(key, content)] = (await mailbox(local, domain, "bob")).items()
    assert key.startswith(f"{domain}/bob/INBOX/new/")
    assert content == (
        b'Return-Path: <"a b"@remote.test>\nDelivered-To: Bob@' + domain.encode() + b"\n" + MESSAGE
    )


async def test_redelivered_job_writes_one_object(local: Local, domain: str) -> None:
    """ARCH-11: the same job twice (and a later attempt) overwrite one object."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob")
    job, results, _ = await deliver(local, f"bob@{domain}", copies=2)
    assert [r.outcome for r in results] == ["delivered", "delivered"]
    _, [again], _ = await deliver(local, f"bob@{domain}", qid=job.id, attempt=2)
    assert again.outcome == "delivered"
    assert len(await mailbox(local, domain, "bob")) == 1


async def test_two_recipients_of_one_message_are_two_objects(local: Local, domain: str) -> None:
    """ADDR-06, ARCH-11: the recipient index, not the address, keys the object."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob")
    job, _, _ = await deliver(local, f"bob@{domain}", rcpt_index=0)
    await deliver(local, f"bob@{domain}", rcpt_index=1, qid=job.id)
    assert len(await mailbox(local, domain, "bob")) == 2


async def test_extension_default_rule_and_named_folder(local: Local, domain: str) -> None:
    """LOCAL-03, LOCAL-10, LOCAL-61: Bob-Lists-Qmail → rule lists-default → folder Lists."""
    await add_domain(local, domain)
    rules = {"lists-default": "./Maildir/.Lists/\n./Maildir/\n"}
    await add_account(local, domain, "bob", rules=rules)
    _, [result], _ = await deliver(local, f"Bob-Lists-Qmail@{domain}")
    assert (result.outcome, result.report) == ("delivered", "did 2+0+0\n")
    folders = sorted(k.split("/")[2] for k in await mailbox(local, domain, "bob"))
    assert folders == ["INBOX", "Lists"]


async def test_unknown_address_is_no_mailbox(local: Local, domain: str) -> None:
    """LOCAL-12: D 5.1.1; nothing is written."""
    await add_domain(local, domain, {"postmaster": "&bob@" + domain})
    await add_account(local, domain, "bob")
    _, [r1], _ = await deliver(local, f"nobody@{domain}")
    _, [r2], _ = await deliver(local, f"bob-nothing@{domain}")
    for result in (r1, r2):
        assert (result.outcome, result.report) == (
            "failed",
            "Sorry, no mailbox here by that name. (#5.1.1)",
        )
    assert await mailbox(local, domain, "bob") == {}


async def test_arch_24_an_address_never_names_a_program_or_file(
    local: Local, domain: str, tmp_path: Path
) -> None:
    """ARCH-24: only rules in the directory run programs or write mailboxes."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob")
    marker = tmp_path / "ran"
    for address in (f"|touch {marker}@{domain}", f"./Maildir/@{domain}", f"/tmp/x@{domain}"):
        _, [result], _ = await deliver(local, address)
        assert result.outcome == "failed", address
    assert not marker.exists()
    assert await mailbox(local, domain, "bob") == {}


async def test_looping_message_fails(local: Local, domain: str) -> None:
    """LOCAL-11: the header already holds this Delivered-To line."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob")
    looped = f"Delivered-To: bob@{domain}\n".encode() + MESSAGE
    _, [result], _ = await deliver(local, f"bob@{domain}", message=looped)
    assert result.outcome == "failed"
    assert result.report.endswith("(#5.4.6)")


async def test_missing_domain_record_defers(local: Local, domain: str) -> None:
    """LOCAL-04: Z Unable to find domain record."""
    _, [result], _ = await deliver(local, f"bob@{domain}")
    assert (result.outcome, result.report) == (
        "deferred",
        "Unable to find domain record. (#4.3.0)",
    )


async def test_quota(local: Local, domain: str) -> None:
    """LOCAL-33: a file delivery over the quota is Z 4.2.2; the first one fits."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob", quota=len(MESSAGE) + 120)
    _, [first], _ = await deliver(local, f"bob@{domain}")
    _, [second], _ = await deliver(local, f"bob@{domain}")
    assert first.outcome == "delivered"
    assert (second.outcome, second.report) == (
        "deferred",
        "Recipient's mailbox is full. (#4.2.2)",
    )


async def test_quota_raised_then_the_deferred_message_is_delivered(
    local: Local, domain: str
) -> None:
    """LOCAL-33, #13: a deferral over the quota is temporary; the same job delivers once
    ``qmesh user quota`` (``admin.set_quota``) gives the mailbox room."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob", quota=len(MESSAGE) + 120)
    await deliver(local, f"bob@{domain}")
    qid = new_queue_id()
    _, [deferred], _ = await deliver(local, f"bob@{domain}", qid=qid)
    assert (deferred.outcome, deferred.report) == (
        "deferred",
        "Recipient's mailbox is full. (#4.2.2)",
    )
    assert len(await mailbox(local, domain, "bob")) == 1
    await admin.set_quota(local.directory, Target(domain, "bob"), 10 * (len(MESSAGE) + 120))
    _, [delivered], _ = await deliver(local, f"bob@{domain}", qid=qid, attempt=2)
    assert (delivered.outcome, delivered.report) == ("delivered", "did 1+0+0\n")
    assert len(await mailbox(local, domain, "bob")) == 2


async def test_comment_only_rule_discards(local: Local, domain: str) -> None:
    """LOCAL-16: a rule of comments delivers nowhere and succeeds."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob", rules={"": "# discard\n"})
    _, [result], _ = await deliver(local, f"bob@{domain}")
    assert (result.outcome, result.report) == ("delivered", "did 0+0+0\n")
    assert await mailbox(local, domain, "bob") == {}


# -- forwards -----------------------------------------------------------------------------


async def test_account_forward_is_one_new_message(local: Local, domain: str) -> None:
    """LOCAL-17, LOCAL-23, QUEUE-03: all addresses in one message, 'invoked by account'."""
    await add_domain(local, domain)
    rules = {"fwd": f"&x@{domain}\n./Maildir/\ny@{domain}\n"}
    await add_account(local, domain, "bob", rules=rules)
    _, [result], [todo] = await deliver(local, f"bob-fwd@{domain}", sender="s@remote.test")
    assert result.outcome == "delivered"
    assert result.report == f"did 1+2+0\nqp {todo.qp}\n"
    assert todo.envelope.sender == "s@remote.test"
    assert todo.envelope.recipients == (f"x@{domain}", f"y@{domain}")
    assert (todo.origin.kind, todo.origin.account) == ("account", f"bob@{domain}")
    body = await local.queue.get(body_key(todo.id))
    first, rest = body.split(b"\n", 1)
    assert first.startswith(
        f"Received: (qmail {todo.qp} invoked by account bob@{domain}); ".encode()
    )
    assert rest == f"Delivered-To: bob-fwd@{domain}\n".encode() + MESSAGE


async def test_domain_rule_forward_by_alias_with_owner_sender(local: Local, domain: str) -> None:
    """LOCAL-04, LOCAL-22, LOCAL-27: domain rules forward 'by alias'; -owner sets the sender."""
    await add_domain(
        local,
        domain,
        {"sales": f"&alice@{domain}\n", "sales-owner": f"&alice@{domain}\n"},
    )
    _, [result], [todo] = await deliver(local, f"Sales@{domain}")
    assert result.outcome == "delivered"
    assert todo.envelope.sender == f"Sales-owner@{domain}"
    assert todo.origin.kind == "alias"
    body = await local.queue.get(body_key(todo.id))
    assert body.startswith(f"Received: (qmail {todo.qp} invoked by alias); ".encode())


async def test_failure_after_forward_line_forwards_nothing(local: Local, domain: str) -> None:
    """LOCAL-17: any failure means nothing is forwarded."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob", rules={"": f"&x@{domain}\n|exit 111\n"})
    _, [result], todos = await deliver(local, f"bob@{domain}")
    assert (result.outcome, result.report) == (
        "deferred",
        "Delivery program exited with status 111.",
    )
    assert todos == []


async def test_domain_rules_have_no_mailbox(local: Local, domain: str) -> None:
    """LOCAL-57."""
    await add_domain(local, domain, {"x": f"&a@{domain}\n./Maildir/\n"})
    _, [result], todos = await deliver(local, f"x@{domain}")
    assert (result.outcome, result.report) == (
        "deferred",
        "Unable to open ./Maildir/: domain rules have no mailbox. (#4.2.1)",
    )
    assert todos == []


# -- programs -----------------------------------------------------------------------------


async def test_program_exit_codes(local: Local, domain: str) -> None:
    """LOCAL-17, LOCAL-18: 100 permanent; 99 stops after forwards listed before it."""
    await add_domain(local, domain)
    rules = {
        "fail": "|echo no such list; exit 100\n",
        "stop": f"&x@{domain}\n|exit 99\n./Maildir/\n",
        "env": '|test "$RECIPIENT" = "$LOCAL@$HOST" && test "$EXT" = env && grep -q hello\n',
    }
    await add_account(local, domain, "bob", rules=rules)
    _, [failed], _ = await deliver(local, f"bob-fail@{domain}")
    assert (failed.outcome, failed.report) == ("failed", "no such list\n")
    _, [stopped], [todo] = await deliver(local, f"bob-stop@{domain}")
    assert (stopped.outcome, stopped.report) == ("delivered", f"did 0+1+1\nqp {todo.qp}\n")
    _, [env], _ = await deliver(local, f"bob-env@{domain}")
    assert (env.outcome, env.report) == ("delivered", "did 0+0+1\n")
    assert await mailbox(local, domain, "bob") == {}


async def test_local_31_infrastructure_problems_are_temporary(local: Local, domain: str) -> None:
    """LOCAL-31: K/D/Z are delivered/failed/deferred; a message that cannot be read is Z,
    never a bounce, and nothing lands in the mailbox."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob")
    _, [result], _ = await deliver(local, f"bob@{domain}", queued=False)  # no body
    assert (result.outcome, result.report) == ("deferred", NO_MESSAGE)
    assert await mailbox(local, domain, "bob") == {}


async def test_mbox_lines_are_declined(local: Local, domain: str) -> None:
    """LOCAL-25."""
    await add_domain(local, domain)
    await add_account(local, domain, "bob", rules={"": "./Mailbox\n"})
    _, [result], _ = await deliver(local, f"bob@{domain}")
    assert (result.outcome, result.report) == (
        "deferred",
        "mbox delivery is not supported. (#4.3.0)",
    )


# -- recipient check and readiness --------------------------------------------------------


async def test_rcptcheck(local: Local, domain: str) -> None:
    """LOCAL-34, SMTPD-45: valid / invalid / tempfail from directory reads only."""
    await add_domain(local, domain, {"sales": f"&bob@{domain}"})
    await add_account(local, domain, "bob", rules={"foo": "./Maildir/"})

    async def ask(recipient: str, namespace: str = domain) -> str:
        question = RcptCheck(recipient=recipient, namespace=namespace)
        reply = await local.nc.request(subjects.RCPTCHECK, question.encode(), timeout=3)
        return RcptVerdict.decode(reply.data).verdict

    assert await ask(f"Bob@{domain}") == "valid"
    assert await ask(f"bob-foo@{domain}") == "valid"
    assert await ask(f"sales@{domain}") == "valid"
    assert await ask(f"bob-bar@{domain}") == "invalid"
    assert await ask(f"nobody@{domain}") == "invalid"
    assert await ask(f"nobody@x{domain}", namespace=f"x{domain}") == "tempfail"


async def test_vacation_reply_once_per_sender_never_to_lists(local: Local, domain: str) -> None:
    """Issue 14 (vacation(1), RFC 3834): the account's reply goes once to a sender, from the
    null sender, after the message is in the mailbox; not again within the interval, not to
    a list's post, a bounce or an extension address; the delivery is the same with it."""
    await add_domain(local, domain)
    vacation = admin.vacation_reply("Away until Monday", "I am away.", 7)
    await add_account(local, domain, "alice", vacation=vacation, rules={"ext": "./Maildir/\n"})
    sender = f"carol@{domain}"  # in this test's domain, so the watch sees the reply
    message = b"Message-ID: <m1@remote.test>\nSubject: hi\n\nhello\n"
    _, [result], [reply] = await deliver(local, f"alice@{domain}", sender=sender, message=message)
    assert (result.outcome, result.report) == ("delivered", "did 1+0+0\n")
    assert reply.envelope.sender == "" and reply.envelope.recipients == (sender,)
    assert (reply.origin.kind, reply.origin.account) == ("account", f"alice@{domain}")
    body = await local.queue.get(body_key(reply.id))
    assert f"From: <alice@{domain}>\nTo: <{sender}>\nSubject: Away until Monday\n".encode() in body
    assert b"Auto-Submitted: auto-replied" in body and b"In-Reply-To: <m1@remote.test>" in body
    assert body.endswith(b"\n\nI am away.\n")
    assert len(await mailbox(local, domain, "alice")) == 1
    # the same sender again, a list's post, a bounce, an extension: delivered, no reply
    for rcpt, who, text in (
        (f"alice@{domain}", sender, message),
        (f"alice@{domain}", f"dave@{domain}", b"List-Id: <talk.lists.test>\n\npost\n"),
        (f"alice@{domain}", f"erin@{domain}", b"Precedence: bulk\n\nnews\n"),
        (f"alice@{domain}", "", MESSAGE),
        (f"alice-ext@{domain}", f"frank@{domain}", MESSAGE),
    ):
        _, [result], todos = await deliver(local, rcpt, sender=who, message=text)
        assert result.outcome == "delivered" and todos == [], (rcpt, who)
    assert len(await mailbox(local, domain, "alice")) == 6
    # turned off: no reply to a new sender
    await admin.set_vacation(local.directory, Target(domain, "alice"), None)
    _, [result], todos = await deliver(local, f"alice@{domain}", sender=f"gina@{domain}")
    assert result.outcome == "delivered" and todos == []


async def test_ready(local: Local) -> None:
    url = f"http://127.0.0.1:{local.running.http_port}/readyz"

    def get() -> tuple[int, dict[str, object]]:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())

    status, body = await asyncio.to_thread(get)
    assert (status, body) == (200, {"ready": True})
