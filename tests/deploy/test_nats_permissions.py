"""The per-service NATS users (ARCH-21) of k8s/qmesh/files/nats-permissions.yaml.

First as data: every subject, consumer and KV bucket of qmesh.contract.subjects is reachable by
the service that needs it, so a new subject without a permission fails here instead of in a
cluster. Then for real: a nats-server loaded with deploy/nats/qmesh.conf (generated from the
same list), where each service's user provisions, publishes and consumes through qmesh.bus
exactly as the services do, and is refused what ARCH-21 forbids.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, KeyValueConfig, StreamConfig
from nats.js.errors import BadRequestError
from nats.js.errors import Error as JsError

from qmesh.bus.connection import NatsConnection
from qmesh.bus.jetstream import inbox_prefix
from qmesh.bus.provision import (
    STREAMS,
    ConsumerSpec,
    await_streams,
    bind_consumer,
    open_kv,
    provision,
    stream_config,
)
from qmesh.cli.natsd import nats_server_binary
from qmesh.contract import subjects
from qmesh.runtime.settings import Settings
from services.send.depth import QueueDepth
from services.send.store import StateStore
from tests.deploy.tools import CHART, ROOT, SERVICES, Tools

pytestmark = pytest.mark.timeout(900)  # the first test may install the tools

Permissions = dict[str, dict[str, Any]]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: `*` is one token, `>` one or more trailing tokens."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def allowed(perms: Permissions, user: str, direction: str, subject: str) -> bool:
    patterns: list[str] = perms[user][direction]
    return any(subject_matches(p, subject) for p in patterns)


@pytest.fixture(scope="module")
def permissions(tools: Tools) -> Permissions:
    loaded: Permissions = tools.load_yaml(CHART / "files" / "nats-permissions.yaml")
    # webadmin and webmail: admin's and webmail's pages (#14)
    assert set(loaded) == {*SERVICES, "webadmin", "webmail", "admin"}
    return loaded


def test_wildcards() -> None:
    assert subject_matches("$JS.ACK.QMESH_LOCAL.local.>", "$JS.ACK.QMESH_LOCAL.local.1.2.3")
    assert not subject_matches("$JS.ACK.QMESH_LOCAL.local.>", "$JS.ACK.QMESH_LOCAL.local")
    assert subject_matches("qmesh.admin.send.>", "qmesh.admin.send.flush")
    assert not subject_matches("qmesh.todo", "qmesh.todo.x")


def test_every_subject_has_a_publisher(permissions: Permissions) -> None:
    names = [n for n in dir(subjects) if n.isupper()]
    published = [getattr(subjects, n) for n in names]
    qmesh_subjects = [s for s in published if isinstance(s, str) and s.startswith("qmesh.")]
    assert subjects.TODO in qmesh_subjects
    for subject in qmesh_subjects:
        users = [u for u in permissions if allowed(permissions, u, "publish", subject)]
        assert users, f"no NATS user may publish {subject}: add it to nats-permissions.yaml"


def test_each_durable_consumer_belongs_to_its_service(permissions: Permissions) -> None:
    owners = {
        (subjects.STREAM_TODO, subjects.CONSUMER_SEND_TODO): "send",
        (subjects.STREAM_RESULT, subjects.CONSUMER_SEND_RESULT): "send",
        (subjects.job_stream("local"), subjects.job_consumer("local")): "local",
        (subjects.job_stream("remote"), subjects.job_consumer("remote")): "remote",
    }
    for (stream, durable), owner in owners.items():
        for user in permissions:
            fetch = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
            ack = f"$JS.ACK.{stream}.{durable}.1.1.1.1.1"
            may = allowed(permissions, user, "publish", fetch)
            assert may == (user in (owner, "admin")), (user, fetch)
            assert allowed(permissions, user, "publish", ack) == (user == owner), (user, ack)


def test_request_subjects_have_a_responder(permissions: Permissions) -> None:
    requests = [subjects.RCPTCHECK, subjects.ADMIN_SEND_FLUSH, subjects.ADMIN_SEND_RELOAD]
    for subject in requests:
        responders = [u for u in permissions if allowed(permissions, u, "subscribe", subject)]
        assert responders, subject
        assert all(permissions[u].get("allow_responses") for u in responders), subject


def test_arch21_scopes(permissions: Permissions) -> None:
    def pub(user: str, subject: str) -> bool:
        return allowed(permissions, user, "publish", subject)

    directory_write = f"$KV.{subjects.KV_DIRECTORY}.domain.example.test"
    # the commands and admin's pages (issue 14) write the directory; no mail service does
    assert [u for u in permissions if pub(u, directory_write)] == ["webadmin", "admin"]
    assert not any(pub(u, subjects.JOB_LOCAL) for u in ("smtpd", "local", "remote", "pop3d"))
    assert not any(pub(u, subjects.RESULT_REMOTE) for u in ("smtpd", "send", "local", "pop3d"))
    queue_state = f"$KV.{subjects.KV_QUEUE}.info.1"
    assert [u for u in SERVICES if pub(u, queue_state)] == ["send"]
    # pop3d publishes nothing but KV leases, limit counters, folder indexes and their
    # announcements (a DELE is an IMAP expunge, #13) and JetStream API calls
    pop3d_writes = (
        "$JS.",
        "$KV.qmesh_leases.",
        "$KV.qmesh_limits.",
        "$KV.qmesh_mailbox.",
        "qmesh.mailbox.",
    )
    assert all(s.startswith(pop3d_writes) for s in permissions["pop3d"]["publish"])
    # remote reads no directory (ARCH-21: must not read mailboxes or the directory)
    assert not pub("remote", f"$JS.API.DIRECT.GET.KV_{subjects.KV_DIRECTORY}.x")


# --- against a real nats-server -------------------------------------------------------------

LISTEN = re.compile(r"Listening for client connections on (\S+:\d+)")
VIOLATION = "permissions violation"


@pytest.fixture(scope="module")
def nats_with_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nats-server with deploy/nats/qmesh.conf on a free loopback port, provisioned as admin."""
    d = tmp_path_factory.mktemp("nats-users")
    log = d / "nats.log"
    process = subprocess.Popen(
        [
            nats_server_binary(),
            "-c",
            str(ROOT / "deploy/nats/qmesh.conf"),
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-js",
            "-sd",
            str(d / "js"),
            "-l",
            str(log),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Server is ready" in text and (m := LISTEN.search(text)):
                url = f"nats://{m.group(1)}"
                asyncio.run(_provision_as_admin(url))
                yield url
                break
            assert process.poll() is None, text[-2000:]
            time.sleep(0.05)
        else:
            raise TimeoutError(f"nats-server not ready; see {log}")
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _provision_as_admin(url: str) -> None:
    """The setup step (hardening #3): only admin makes streams, consumers and buckets."""
    admin = await connect(url, "admin")
    try:
        specs = (
            ConsumerSpec(subjects.STREAM_TODO, subjects.CONSUMER_SEND_TODO, 32),
            ConsumerSpec(subjects.STREAM_RESULT, subjects.CONSUMER_SEND_RESULT, 64),
            ConsumerSpec(subjects.STREAM_LOCAL, subjects.CONSUMER_LOCAL, 10),
            ConsumerSpec(subjects.STREAM_REMOTE, subjects.CONSUMER_REMOTE, 20),
            ConsumerSpec(subjects.STREAM_LISTS, subjects.CONSUMER_LISTS, 4),
        )
        js = admin.jetstream(timeout=5)
        await provision(js, specs)
        directory = await js.key_value(subjects.KV_DIRECTORY)
        await directory.put("domain.example.test", b"{}")
        await directory.put("account.example.test.alice", b'{"verifier": "secret-hash"}')
    finally:
        await admin.close()


def passwords() -> dict[str, str]:
    conf = (ROOT / "deploy/nats/qmesh.conf").read_text()
    body = json.loads("".join(line for line in conf.splitlines() if not line.startswith("#")))
    users = body["accounts"]["QMESH"]["users"]
    return {u["user"].removeprefix("qmesh-"): u["password"] for u in users}


@dataclass
class User:
    """One service's connection, with the permission violations the server reported to it."""

    name: str
    nc: Client
    errors: list[str] = field(default_factory=list)

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream(timeout=1)

    async def refused(self, action: Callable[[], Awaitable[object]], subject: str) -> None:
        """The server refuses ``action`` with a permissions violation naming ``subject``."""
        before = len(self.errors)
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError, JsError):
            await action()
        await self.nc.flush()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            seen = [e for e in self.errors[before:] if subject.lower() in e.lower()]
            if seen:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.name}: no violation for {subject}: {self.errors[before:]}")


async def connect(url: str, user: str, errors: list[str] | None = None) -> Client:
    async def record(err: Exception) -> None:
        if errors is not None and VIOLATION in str(err).lower():
            errors.append(str(err))

    return await nats.connect(
        url,
        user=f"qmesh-{user}",
        password=passwords()[user],
        inbox_prefix=inbox_prefix(user),
        allow_reconnect=False,
        connect_timeout=5,
        error_cb=record,
    )


@pytest.fixture
async def as_user(nats_with_users: str) -> AsyncIterator[Callable[[str], Awaitable[User]]]:
    users: list[User] = []

    async def open_as(name: str) -> User:
        errors: list[str] = []
        user = User(name, await connect(nats_with_users, name, errors), errors)
        users.append(user)
        return user

    yield open_as
    for user in users:
        await user.nc.close()


SERVICE_USE: dict[str, dict[str, Any]] = {
    "smtpd": {
        "streams": [subjects.STREAM_TODO],
        "kv": [subjects.KV_DIRECTORY],
        "consumers": [],
        "publish": [subjects.TODO],
    },
    "send": {
        "streams": [
            subjects.STREAM_TODO,
            subjects.STREAM_LOCAL,
            subjects.STREAM_REMOTE,
            subjects.STREAM_RESULT,
        ],
        "kv": [subjects.KV_QUEUE, subjects.KV_LEASES, subjects.KV_DIRECTORY],
        "consumers": [
            (subjects.STREAM_TODO, subjects.CONSUMER_SEND_TODO),
            (subjects.STREAM_RESULT, subjects.CONSUMER_SEND_RESULT),
        ],
        "publish": [subjects.JOB_LOCAL, subjects.JOB_REMOTE, subjects.TODO],
    },
    "local": {
        "streams": [subjects.STREAM_TODO, subjects.STREAM_RESULT],
        "kv": [subjects.KV_DIRECTORY, subjects.KV_DELIVERIES],
        "consumers": [(subjects.STREAM_LOCAL, subjects.CONSUMER_LOCAL)],
        "publish": [subjects.RESULT_LOCAL, subjects.TODO, subjects.JOB_LISTS],
    },
    "remote": {
        "streams": [subjects.STREAM_RESULT],
        "kv": [subjects.KV_TCPTO, subjects.KV_DELIVERIES, subjects.KV_MTASTS],
        "consumers": [(subjects.STREAM_REMOTE, subjects.CONSUMER_REMOTE)],
        "publish": [subjects.RESULT_REMOTE],
    },
    "pop3d": {
        "streams": [],
        "kv": [subjects.KV_LEASES, subjects.KV_DIRECTORY, subjects.KV_MAILBOX],
        "consumers": [],
        "publish": [],
    },
    "lists": {  # issue #15
        "streams": [subjects.STREAM_TODO, subjects.STREAM_LISTS],
        "kv": [subjects.KV_DIRECTORY, subjects.KV_LISTS, subjects.KV_DELIVERIES],
        "consumers": [(subjects.STREAM_LISTS, subjects.CONSUMER_LISTS)],
        "publish": [subjects.TODO],
    },
    "imapd": {  # no queue at all: the directory, the mailbox index, announcements (#13)
        "streams": [],
        "kv": [subjects.KV_MAILBOX, subjects.KV_DIRECTORY, subjects.KV_LIMITS],
        "consumers": [],
        "publish": [],
    },
}
WRITABLE = {  # bucket -> the key prefix the service owns
    "send": {subjects.KV_QUEUE: "probe", subjects.KV_LEASES: "send"},
    "local": {subjects.KV_DELIVERIES: "ledger"},  # hardening #10: claim, settle, release
    "remote": {
        subjects.KV_TCPTO: "tcpto",
        subjects.KV_DELIVERIES: "ledger",
        subjects.KV_MTASTS: "example.test",  # the MTA-STS policy cache (issue 11)
    },
    "pop3d": {subjects.KV_LEASES: "pop3", subjects.KV_MAILBOX: "probe"},  # expunge (#13)
    "lists": {subjects.KV_LISTS: "subs", subjects.KV_DELIVERIES: "lists"},
    "imapd": {subjects.KV_MAILBOX: "probe", subjects.KV_LIMITS: "fail"},  # failed logins (#12)
}


@pytest.mark.integration
@pytest.mark.parametrize("service", SERVICES)
async def test_service_user_does_its_work(as_user: Any, service: str) -> None:
    """ARCH-21, hardening #3: each service's lookups, reads, writes and consumers work."""
    user: User = await as_user(service)
    js = user.js
    use = SERVICE_USE[service]
    await await_streams(js, use["streams"])
    for bucket in use["kv"]:
        kv = await open_kv(js, bucket)
        if bucket == subjects.KV_DIRECTORY:
            assert (await kv.get("domain.example.test")).value == b"{}"
            watcher = await kv.watch("domain.>")
            assert (await watcher.updates(timeout=2)).key == "domain.example.test"
            await watcher.stop()
        if prefix := WRITABLE.get(service, {}).get(bucket):
            key = f"{prefix}.{service}-lease"
            revision = await kv.create(key, b"1")
            await kv.update(key, b"2", last=revision)
            assert (await kv.get(key)).value == b"2"
            await kv.delete(key)
    for stream, durable in use["consumers"]:
        await bind_consumer(js, stream, durable)
    for subject in use["publish"]:
        await js.publish(subject, b"{}", headers={"Nats-Msg-Id": f"{service}-{subject}"})
    for stream, durable in use["consumers"]:
        subscription = await js.pull_subscribe_bind(durable, stream)
        try:
            for message in await subscription.fetch(1, timeout=1):
                await message.in_progress()
                await message.ack()
        except nats.errors.TimeoutError:
            pass  # nothing queued for this consumer in this test: fetching was allowed
    await user.nc.flush()
    assert user.errors == []


def _stream(name: str, **changes: Any) -> StreamConfig:
    spec = next(s for s in STREAMS if s.name == name)
    config = stream_config(spec, 1)
    changed: StreamConfig = StreamConfig.from_response({**config.as_dict(), **changes})
    return changed


@pytest.mark.integration
@pytest.mark.parametrize("service", SERVICES)
async def test_no_service_may_change_streams_consumers_or_buckets(
    as_user: Any, service: str
) -> None:
    """Hardening #3: smtpd cannot redirect qmesh.todo into the local job stream, pop3d cannot
    set a 1-second max_age on the remote stream; nobody makes, changes or deletes a stream,
    a consumer or a bucket."""
    user: User = await as_user(service)
    js = user.js
    redirect = _stream(subjects.STREAM_LOCAL, subjects=[subjects.JOB_LOCAL, subjects.TODO])
    await user.refused(lambda: js.update_stream(redirect), "STREAM.UPDATE.QMESH_LOCAL")
    short = _stream(subjects.STREAM_REMOTE, max_age=1.0)
    await user.refused(lambda: js.update_stream(short), "STREAM.UPDATE.QMESH_REMOTE")
    await user.refused(lambda: js.delete_stream(subjects.STREAM_TODO), "STREAM.DELETE.QMESH_TODO")
    evil = StreamConfig(name="EVIL", subjects=["qmesh.>"])
    await user.refused(lambda: js.add_stream(evil), "STREAM.CREATE.EVIL")
    await user.refused(lambda: js.purge_stream(subjects.STREAM_RESULT), "STREAM.PURGE.QMESH_RESULT")
    for stream, durable in (
        (subjects.STREAM_LOCAL, subjects.CONSUMER_LOCAL),
        (subjects.STREAM_TODO, subjects.CONSUMER_SEND_TODO),
    ):
        wider = ConsumerConfig(durable_name=durable, name=durable, max_ack_pending=100000)
        await user.refused(
            functools.partial(js.add_consumer, stream, wider), f"CONSUMER.CREATE.{stream}"
        )
        await user.refused(
            functools.partial(js.delete_consumer, stream, durable),
            f"CONSUMER.DELETE.{stream}.{durable}",
        )
    bucket = KeyValueConfig(bucket=subjects.KV_DIRECTORY, history=1)
    await user.refused(
        lambda: js.create_key_value(bucket), f"STREAM.CREATE.KV_{subjects.KV_DIRECTORY}"
    )


FORGED = {  # service -> queue subjects it must not publish
    "smtpd": [subjects.JOB_LOCAL, subjects.JOB_REMOTE, subjects.RESULT_LOCAL],
    "send": [subjects.RESULT_LOCAL, subjects.RESULT_REMOTE],
    "local": [subjects.JOB_LOCAL, subjects.RESULT_REMOTE, subjects.JOB_REMOTE],
    "remote": [subjects.RESULT_LOCAL, subjects.JOB_REMOTE, subjects.TODO],
    "pop3d": [subjects.TODO, subjects.JOB_LOCAL, subjects.RESULT_REMOTE],
    "lists": [subjects.JOB_LOCAL, subjects.RESULT_LOCAL, subjects.JOB_LISTS],
    "imapd": [subjects.TODO, subjects.JOB_LOCAL, subjects.RESULT_LOCAL],
}
OTHERS_CONSUMER = {  # service -> a consumer of another service it must not fetch from
    "smtpd": (subjects.STREAM_TODO, subjects.CONSUMER_SEND_TODO),
    "send": (subjects.STREAM_LOCAL, subjects.CONSUMER_LOCAL),
    "local": (subjects.STREAM_REMOTE, subjects.CONSUMER_REMOTE),
    "remote": (subjects.STREAM_LOCAL, subjects.CONSUMER_LOCAL),
    "pop3d": (subjects.STREAM_RESULT, subjects.CONSUMER_SEND_RESULT),
    "lists": (subjects.STREAM_LOCAL, subjects.CONSUMER_LOCAL),
    "imapd": (subjects.STREAM_LOCAL, subjects.CONSUMER_LOCAL),
}


@pytest.mark.integration
@pytest.mark.parametrize("service", SERVICES)
async def test_no_service_forges_events_or_reads_replies_of_another(
    as_user: Any, service: str
) -> None:
    """ARCH-21, hardening #3: events only on owned subjects, replies only on its own inbox,
    only its own consumer, and the directory written by admin alone."""
    user: User = await as_user(service)
    for subject in FORGED[service]:
        await user.refused(functools.partial(user.nc.publish, subject, b"{}"), f'"{subject}"')
    other = "send" if service != "send" else "local"
    await user.refused(
        lambda: user.nc.subscribe(f"_INBOX_{other}.>"), f'subscription to "_INBOX_{other}'
    )
    await user.refused(lambda: user.nc.subscribe("_INBOX.>"), 'subscription to "_INBOX.>"')
    stream, durable = OTHERS_CONSUMER[service]
    fetch = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
    await user.refused(lambda: user.nc.publish(fetch, b"{}"), fetch)
    write = f"$KV.{subjects.KV_DIRECTORY}.account.example.test.alice"
    await user.refused(lambda: user.nc.publish(write, b'{"verifier": "mine"}'), write)
    spy = f"$KV.{subjects.KV_DIRECTORY}.>"
    await user.refused(lambda: user.nc.subscribe(spy), f'subscription to "{spy}')


@pytest.mark.integration
async def test_arch21_refusals_are_enforced(as_user: Any) -> None:
    """Reading the directory as remote, the queue state as smtpd, a send lease as pop3d."""
    remote: User = await as_user("remote")
    await remote.refused(
        lambda: remote.js.key_value(subjects.KV_DIRECTORY),
        f"STREAM.INFO.KV_{subjects.KV_DIRECTORY}",
    )
    get = f"$JS.API.DIRECT.GET.KV_{subjects.KV_DIRECTORY}.$KV.{subjects.KV_DIRECTORY}.x"
    await remote.refused(lambda: remote.nc.publish(get, b""), get)

    smtpd: User = await as_user("smtpd")
    await smtpd.refused(
        lambda: smtpd.js.key_value(subjects.KV_QUEUE), f"STREAM.INFO.KV_{subjects.KV_QUEUE}"
    )
    msg_get = f"$JS.API.STREAM.MSG.GET.KV_{subjects.KV_DIRECTORY}"
    await smtpd.refused(lambda: smtpd.nc.publish(msg_get, b'{"seq": 1}'), msg_get)

    pop3d: User = await as_user("pop3d")
    lease = f"$KV.{subjects.KV_LEASES}.send.1732510000123.0123456789abcdef"
    # pop3d's QUIT announces its expunge to imapd (#13): that one subject and no other event
    await pop3d.nc.publish(subjects.mailbox("0" * 24), b"")
    await pop3d.nc.flush()
    assert pop3d.errors == []
    await pop3d.refused(lambda: pop3d.nc.publish(lease, b"x"), lease)
    await pop3d.refused(lambda: pop3d.nc.publish("qmesh.mailbox", b""), '"qmesh.mailbox"')
    send: User = await as_user("send")
    maildrop = f"$KV.{subjects.KV_LEASES}.pop3.example.test/alice"
    await send.refused(lambda: send.nc.publish(maildrop, b"x"), maildrop)


async def anonymous_connect(url: str) -> bytes:
    """What the server answers a client that gives no credential (the NATS wire protocol)."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.integration
async def test_an_unauthenticated_client_is_refused(nats_with_users: str) -> None:
    assert b"Authorization Violation" in await anonymous_connect(nats_with_users)


@pytest.mark.integration
async def test_send_25_admin_reads_the_queue_and_flushes_through_send(
    nats_with_users: str, as_user: Any
) -> None:
    """What ``qmesh queue stat|list|flush`` do as the admin user, answered by send's user."""
    send: User = await as_user("send")
    queue_kv = await open_kv(send.js, subjects.KV_QUEUE)
    await queue_kv.put("msg.1732510000123.0123456789abcdef", b"{}")
    admin: User = await as_user("admin")

    async def answer(msg: Msg) -> None:
        await msg.respond(b"flushed")

    await send.nc.subscribe(subjects.ADMIN_SEND_FLUSH, queue="send", cb=answer)
    await send.nc.flush()
    deadline = time.monotonic() + 10
    while True:  # on a busy machine the server may take a moment to route to the new interest
        try:
            reply = await admin.nc.request(subjects.ADMIN_SEND_FLUSH, b"{}", timeout=2)
            break
        except NoRespondersError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    assert reply.data == b"flushed"

    js = admin.nc.jetstream(timeout=2)
    assert (await js.stream_info(subjects.STREAM_TODO)).state.messages >= 0
    kv = await js.key_value(subjects.KV_QUEUE)
    assert "msg.1732510000123.0123456789abcdef" in await kv.keys()
    watcher = await kv.watch("msg.>")
    entry = await watcher.updates(timeout=2)
    await watcher.stop()
    assert entry is not None and entry.value == b"{}"
    assert send.errors == admin.errors == []


@pytest.mark.integration
async def test_admin_reads_and_requeues_the_shunt(as_user: Any) -> None:
    """The shunt stream (hardening #11) is read and emptied by admin, fed by the services."""
    admin: User = await as_user("admin")
    js = admin.js
    shunt = StreamConfig(
        name=subjects.STREAM_SHUNT,
        subjects=[
            subjects.SHUNT_TODO,
            subjects.SHUNT_LOCAL,
            subjects.SHUNT_REMOTE,
            subjects.SHUNT_RESULT,
        ],
    )
    with contextlib.suppress(BadRequestError):
        await js.add_stream(shunt)
    for service, subject in (
        ("send", subjects.SHUNT_TODO),
        ("send", subjects.SHUNT_RESULT),
        ("local", subjects.SHUNT_LOCAL),
        ("remote", subjects.SHUNT_REMOTE),
    ):
        user: User = await as_user(service)
        await user.js.publish(subject, b"{}")
    info = await js.stream_info(subjects.STREAM_SHUNT)
    assert info.state.messages >= 4
    message = await js.get_msg(subjects.STREAM_SHUNT, info.state.last_seq)
    await js.publish(subjects.TODO, message.data or b"{}")  # requeue
    await js.delete_msg(subjects.STREAM_SHUNT, info.state.last_seq)
    listing = await js.pull_subscribe(subjects.SHUNT_TODO, stream=subjects.STREAM_SHUNT)
    await listing.unsubscribe()
    assert admin.errors == []


@pytest.mark.integration
async def test_chart_4_send_reads_queue_depth_without_violations(
    nats_with_users: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Chart #4: send's depth and status line (SEND-40) run as send's NATS user: no permission
    violation, and the status line is logged."""
    password = tmp_path / "send-password"
    password.write_text(passwords()["send"])
    settings = Settings(
        nats_url=nats_with_users, nats_user="qmesh-send", nats_password_file=password
    )
    conn = NatsConnection(
        settings,
        "send",
        streams=(subjects.STREAM_TODO, subjects.STREAM_LOCAL, subjects.STREAM_REMOTE),
        kv_buckets=(subjects.KV_QUEUE,),
    )
    await conn.start()
    try:
        states = StateStore(lambda: conn.kv(subjects.KV_QUEUE))
        depth = QueueDepth(conn, states.ids, lambda: (10, 20))
        with caplog.at_level(logging.INFO):
            await asyncio.wait_for(depth.measure(), 10)
            await conn.nc.flush()
    finally:
        await conn.stop()
    assert not [r for r in caplog.records if VIOLATION in r.getMessage().lower()]
    assert any(r.getMessage() == "status" for r in caplog.records)


def test_permission_file_is_what_the_chart_renders(tools: Tools) -> None:
    objects = tools.template()
    (auth,) = [s for s in objects if s["metadata"]["name"] == "ci-qmesh-nats-auth"]
    text = auth["stringData"]["auth.conf"]
    perms: Permissions = tools.load_yaml(CHART / "files" / "nats-permissions.yaml")
    for user, rules in perms.items():
        block = text.split(f'user: "qmesh-{user}"', 1)[1].split("user:", 1)[0]
        for subject in rules["publish"] + rules["subscribe"]:
            assert json.dumps(subject) in block, (user, subject)
    assert Path(ROOT / "deploy/nats/qmesh.conf").exists()


@pytest.mark.integration
async def test_webmail_user_does_its_work_and_no_more(as_user: Any) -> None:
    """Issue 14: webmail reads the directory and writes account records only (a password), uses
    the mailbox model, its own sessions and the login counts, and sends through qmesh.todo; it
    may not touch domains, admin's sessions, the queue state or another service's events."""
    user: User = await as_user("webmail")
    js = user.js
    await await_streams(js, [subjects.STREAM_TODO])
    directory = await open_kv(js, subjects.KV_DIRECTORY)
    assert (await directory.get("domain.example.test")).value == b"{}"
    entry = await directory.get("account.example.test.alice")
    await directory.update("account.example.test.alice", entry.value or b"", last=entry.revision)
    for bucket in (subjects.KV_MAILBOX, subjects.KV_MAILSESSIONS, subjects.KV_LIMITS):
        kv = await open_kv(js, bucket)
        revision = await kv.create("probe.webmail", b"1")
        await kv.update("probe.webmail", b"2", last=revision)
        await kv.delete("probe.webmail")
    await js.publish(subjects.TODO, b"{}", headers={"Nats-Msg-Id": "webmail-todo"})
    await user.nc.flush()
    assert user.errors == []
    domain = f"$KV.{subjects.KV_DIRECTORY}.domain.example.test"
    await user.refused(lambda: user.nc.publish(domain, b"{}"), domain)
    sessions = f"$KV.{subjects.KV_WEBSESSIONS}.session.x"
    await user.refused(lambda: user.nc.publish(sessions, b"{}"), sessions)
    await user.refused(
        lambda: js.key_value(subjects.KV_WEBSESSIONS), f"STREAM.INFO.KV_{subjects.KV_WEBSESSIONS}"
    )
    await user.refused(
        lambda: js.key_value(subjects.KV_QUEUE), f"STREAM.INFO.KV_{subjects.KV_QUEUE}"
    )
    for subject in (subjects.JOB_LOCAL, subjects.JOB_REMOTE, subjects.RESULT_LOCAL):
        await user.refused(functools.partial(user.nc.publish, subject, b"{}"), f'"{subject}"')
    await user.refused(lambda: user.nc.subscribe("_INBOX_send.>"), 'subscription to "_INBOX_send')


@pytest.mark.integration
async def test_webadmin_manages_lists_and_no_more(as_user: Any, nats_with_users: str) -> None:
    """Issues 14 and 15: admin's list pages create, show, subscribe and delete lists through
    qmesh.lists.admin as webadmin, whose deletion purges the list's state; it may not touch
    the lists' cookie key, hand a job to the lists service or make a bucket."""
    from qmesh.directory import admin as directory_admin
    from qmesh.directory.store import Directory
    from qmesh.lists import admin as lists_admin
    from qmesh.lists import state
    from qmesh.lists.names import list_hash

    user: User = await as_user("webadmin")
    js = user.js
    dkv = await open_kv(js, subjects.KV_DIRECTORY)
    kv = await open_kv(js, subjects.KV_LISTS)
    stores = lists_admin.ListStores(Directory(dkv), state.ListDirectory(dkv), kv)
    await directory_admin.add_domain(stores.directory, "lists-perm.test")
    options = lists_admin.ListOptions(moderated=True, owner="boss@lists-perm.test")
    record = lists_admin.list_record("news@lists-perm.test", options)
    await lists_admin.create_list(stores, record)
    assert await lists_admin.add_subscribers(kv, record, ["a@example.test", "b@example.test"]) == 2
    assert await lists_admin.remove_subscribers(kv, record, ["a@example.test"]) == 1
    assert [r.name for r in await lists_admin.domain_lists(stores.lists, record.domain)] == ["news"]
    # the lists service's state of the list, written as the service would
    lh = list_hash(record.address)
    service = await connect(nats_with_users, "admin")
    try:
        skv = await service.jetstream(timeout=5).key_value(subjects.KV_LISTS)
        for key in (f"seq.{lh}", f"bounce.{lh}.0123", f"held.{lh}.abc", "secret"):
            await skv.put(key, b"1")
        await lists_admin.delete_list(stores, record)
        await user.nc.flush()
        for key in (f"seq.{lh}", f"bounce.{lh}.0123", f"held.{lh}.abc"):
            with pytest.raises(nats.js.errors.KeyNotFoundError):
                await skv.get(key)
        assert (await skv.get("secret")).value == b"1"
    finally:
        await service.close()
    assert await stores.lists.get(record.domain, record.name) is None
    assert user.errors == []
    secret = f"$KV.{subjects.KV_LISTS}.secret"
    await user.refused(lambda: user.nc.publish(secret, b"x"), secret)
    await user.refused(
        functools.partial(user.nc.publish, subjects.JOB_LISTS, b"{}"), f'"{subjects.JOB_LISTS}"'
    )
    await user.refused(
        lambda: js.create_key_value(KeyValueConfig(bucket="webadmin_probe")),
        "STREAM.CREATE.KV_webadmin_probe",
    )
