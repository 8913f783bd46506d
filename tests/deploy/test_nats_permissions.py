"""The per-service NATS users (ARCH-21) of k8s/qmesh/files/nats-permissions.yaml.

First as data: every subject, consumer and KV bucket of qmesh.contract.subjects is reachable by
the service that needs it, so a new subject without a permission fails here instead of in a
cluster. Then for real: a nats-server loaded with deploy/nats/qmesh.conf (generated from the
same list), where each service's user provisions, publishes and consumes through qmesh.bus
exactly as the services do, and is refused what ARCH-21 forbids.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from qmesh.bus.provision import ensure_consumer, ensure_kv, provision_streams
from qmesh.cli.natsd import nats_server_binary
from qmesh.contract import subjects
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
    assert set(loaded) == {*SERVICES, "admin"}
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
    assert [u for u in permissions if pub(u, directory_write)] == ["admin"]
    assert not any(pub(u, subjects.JOB_LOCAL) for u in ("smtpd", "local", "remote", "pop3d"))
    assert not any(pub(u, subjects.RESULT_REMOTE) for u in ("smtpd", "send", "local", "pop3d"))
    queue_state = f"$KV.{subjects.KV_QUEUE}.info.1"
    assert [u for u in SERVICES if pub(u, queue_state)] == ["send"]
    # pop3d publishes nothing but KV leases and JetStream API calls
    assert all(s.startswith(("$JS.", "$KV.qmesh_leases.")) for s in permissions["pop3d"]["publish"])
    # remote reads no directory (ARCH-21: must not read mailboxes or the directory)
    assert not pub("remote", f"$JS.API.DIRECT.GET.KV_{subjects.KV_DIRECTORY}.x")


# --- against a real nats-server -------------------------------------------------------------

LISTEN = re.compile(r"Listening for client connections on (\S+:\d+)")


@pytest.fixture(scope="module")
def nats_with_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nats-server with deploy/nats/qmesh.conf on a free loopback port."""
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
                yield f"nats://{m.group(1)}"
                break
            assert process.poll() is None, text[-2000:]
            time.sleep(0.05)
        else:
            raise TimeoutError(f"nats-server not ready; see {log}")
    finally:
        process.terminate()
        process.wait(timeout=10)


def passwords() -> dict[str, str]:
    conf = (ROOT / "deploy/nats/qmesh.conf").read_text()
    body = json.loads("".join(line for line in conf.splitlines() if not line.startswith("#")))
    users = body["accounts"]["QMESH"]["users"]
    return {u["user"].removeprefix("qmesh-"): u["password"] for u in users}


async def connect(url: str, user: str) -> Client:
    return await nats.connect(
        url,
        user=f"qmesh-{user}",
        password=passwords()[user],
        allow_reconnect=False,
        connect_timeout=5,
    )


@pytest.fixture
async def as_user(nats_with_users: str) -> AsyncIterator[Any]:
    clients: list[Client] = []

    async def open_as(user: str) -> JetStreamContext:
        nc = await connect(nats_with_users, user)
        clients.append(nc)
        return nc.jetstream(timeout=2)

    yield open_as
    for nc in clients:
        await nc.close()


SERVICE_USE: dict[str, dict[str, Any]] = {
    "smtpd": {"kv": [subjects.KV_DIRECTORY], "consumers": [], "publish": [subjects.TODO]},
    "send": {
        "kv": [subjects.KV_QUEUE, subjects.KV_LEASES, subjects.KV_DIRECTORY],
        "consumers": [
            (subjects.STREAM_TODO, subjects.CONSUMER_SEND_TODO),
            (subjects.STREAM_RESULT, subjects.CONSUMER_SEND_RESULT),
        ],
        "publish": [subjects.JOB_LOCAL, subjects.JOB_REMOTE, subjects.TODO],
    },
    "local": {
        "kv": [subjects.KV_DIRECTORY],
        "consumers": [(subjects.STREAM_LOCAL, subjects.CONSUMER_LOCAL)],
        "publish": [subjects.RESULT_LOCAL, subjects.TODO],
    },
    "remote": {
        "kv": [subjects.KV_TCPTO],
        "consumers": [(subjects.STREAM_REMOTE, subjects.CONSUMER_REMOTE)],
        "publish": [subjects.RESULT_REMOTE],
    },
    "pop3d": {"kv": [subjects.KV_LEASES, subjects.KV_DIRECTORY], "consumers": [], "publish": []},
}
WRITABLE = {
    "send": {subjects.KV_QUEUE, subjects.KV_LEASES},
    "remote": {subjects.KV_TCPTO},
    "pop3d": {subjects.KV_LEASES},
}


@pytest.mark.integration
@pytest.mark.parametrize("service", SERVICES)
async def test_service_user_does_its_work(as_user: Any, service: str) -> None:
    admin: JetStreamContext = await as_user("admin")
    await provision_streams(admin, 1)
    for bucket in (subjects.KV_QUEUE, subjects.KV_LEASES, subjects.KV_DIRECTORY):
        await ensure_kv(admin, bucket, 1)
    directory = await admin.key_value(subjects.KV_DIRECTORY)
    await directory.put("domain.example.test", b"{}")

    js: JetStreamContext = await as_user(service)
    use = SERVICE_USE[service]
    await provision_streams(js, 1)
    for bucket in use["kv"]:
        kv = await ensure_kv(js, bucket, 1)
        if bucket == subjects.KV_DIRECTORY:
            assert (await kv.get("domain.example.test")).value == b"{}"
            assert await kv.keys() == ["domain.example.test"]
        if bucket in WRITABLE.get(service, set()):
            revision = await kv.create(f"{service}.lease", b"1")
            await kv.update(f"{service}.lease", b"2", last=revision)
            await kv.delete(f"{service}.lease")
            watcher = await kv.watchall()
            await watcher.stop()
    for stream, durable in use["consumers"]:
        await ensure_consumer(js, stream, durable, max_ack_pending=10)
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


@pytest.mark.integration
async def test_arch21_refusals_are_enforced(as_user: Any) -> None:
    admin: JetStreamContext = await as_user("admin")
    await provision_streams(admin, 1)
    await ensure_kv(admin, subjects.KV_DIRECTORY, 1)

    smtpd: JetStreamContext = await as_user("smtpd")
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await smtpd.publish(subjects.JOB_LOCAL, b"{}", timeout=1)
    directory = await smtpd.key_value(subjects.KV_DIRECTORY)
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await directory.put("domain.evil.test", b"{}")

    remote: JetStreamContext = await as_user("remote")
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await remote.key_value(subjects.KV_DIRECTORY)


@pytest.mark.integration
async def test_send_25_admin_reads_the_queue_and_flushes_through_send(
    nats_with_users: str, as_user: Any
) -> None:
    """What ``qmesh queue stat|list|flush`` do as the admin user, answered by send's user."""
    send_js: JetStreamContext = await as_user("send")
    await provision_streams(send_js, 1)
    queue_kv = await ensure_kv(send_js, subjects.KV_QUEUE, 1)
    await queue_kv.put("msg.1732510000123.0123456789abcdef", b"{}")

    send = await connect(nats_with_users, "send")
    admin = await connect(nats_with_users, "admin")
    try:

        async def answer(msg: Msg) -> None:
            await msg.respond(b"flushed")

        await send.subscribe(subjects.ADMIN_SEND_FLUSH, queue="send", cb=answer)
        await send.flush()
        reply = await admin.request(subjects.ADMIN_SEND_FLUSH, b"{}", timeout=2)
        assert reply.data == b"flushed"

        js = admin.jetstream(timeout=2)
        assert (await js.stream_info(subjects.STREAM_TODO)).state.messages >= 0
        kv = await js.key_value(subjects.KV_QUEUE)
        assert "msg.1732510000123.0123456789abcdef" in await kv.keys()
        watcher = await kv.watch("msg.>")
        entry = await watcher.updates(timeout=2)
        await watcher.stop()
        assert entry is not None and entry.value == b"{}"
    finally:
        await send.close()
        await admin.close()


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
