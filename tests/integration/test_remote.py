"""remote against a real nats-server, real stores, and SMTP, QMTP and DNS servers on loopback.

Jobs are published onto the real ``QMESH_REMOTE`` stream; the service delivers them and its
results are read back from ``qmesh.result.remote`` by queue id. The servers it talks to run in
the test's own loop on 127.0.0.1 or ::1; its resolver asks only the test's DNS server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError

from qmesh.bus.jetstream import JetStreamPublisher
from qmesh.bus.provision import ensure_kv, provision_streams
from qmesh.contract import subjects
from qmesh.contract.events import RemoteJob, Result
from qmesh.contract.ids import new_queue_id
from qmesh.dns.resolver import async_resolver
from qmesh.runtime.service import Running, start
from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobStore
from qmesh.store.files import FileStore
from qmesh.store.keys import body_key
from qmesh.store.s3 import S3Store, s3_client
from services.remote import report
from services.remote.app import assemble
from services.remote.tcpto import Record, decode, encode, key_for
from tests.integration.remote_peers import (
    OPEN,
    DnsServer,
    Peer,
    QmtpPeer,
    Records,
    Sink,
    close_open_connections,
    start_peer,
    start_sink,
)
from tests.servers import S3Server

pytestmark = pytest.mark.integration

BASE_CONTROLS = {
    "me": "relay.example.test",
    "ipme": "192.0.2.1",  # this system is not on loopback, so loopback MX are not "self"
    "timeoutremote": "10",
    "timeoutconnect": "5",
}
BODY = b"Received: (qmail 1 invoked by inject); 5 Nov 2024 07:03:09 -0000\nSubject: hi\n\nhello\n"


@dataclass
class Harness:
    nats_url: str
    js: JetStreamContext
    store: BlobStore
    control: Path
    tmp: Path
    dns: DnsServer
    running: list[Running] = field(default_factory=list)

    def controls(self, **values: str) -> None:
        for name, value in {**BASE_CONTROLS, **values}.items():
            (self.control / name).write_text(value + "\n")

    async def start(self, *, smtp_port: int = 25) -> Running:
        settings = Settings(
            nats_url=self.nats_url,
            control=self.control,
            http_host="127.0.0.1",
            http_port=0,
            store=f"file://{self.tmp / 'unused'}",
        )
        service = assemble(
            settings,
            queue=self.store,
            resolver=async_resolver(f"127.0.0.1:{self.dns.port}"),
            environ={},
            smtp_port=smtp_port,
        )
        running = await start(service, settings)
        self.running.append(running)
        return running

    async def job(
        self,
        recipient: str,
        *,
        sender: str = "joe@example.test",
        body: bytes | None = BODY,
        smtputf8: bool = False,
    ) -> RemoteJob:
        qid = new_queue_id()
        if body is not None:
            await self.store.put(body_key(qid), body)
        job = RemoteJob(
            id=qid,
            qp=4242,
            sender=sender,
            recipient=recipient,
            rcpt_index=0,
            attempt=1,
            size=len(body or b""),
            smtputf8=smtputf8,
        )
        await JetStreamPublisher(self.js).publish(
            subjects.JOB_REMOTE, job.encode(), msg_id=job.msg_id()
        )
        return job

    async def jobs(self, recipients: list[str], *, body: bytes = BODY) -> list[RemoteJob]:
        """One message to several recipients: one job per recipient, as send publishes them."""
        qid = new_queue_id()
        await self.store.put(body_key(qid), body)
        jobs = [
            RemoteJob(
                id=qid,
                qp=4242,
                sender="joe@example.test",
                recipient=recipient,
                rcpt_index=index,
                attempt=1,
                size=len(body),
            )
            for index, recipient in enumerate(recipients)
        ]
        for job in jobs:
            await JetStreamPublisher(self.js).publish(
                subjects.JOB_REMOTE, job.encode(), msg_id=job.msg_id()
            )
        return jobs

    async def results(self, jobs: list[RemoteJob], within: float = 30.0) -> list[Result]:
        """The results of ``jobs`` (one message), in the order of the jobs."""
        deadline = time.monotonic() + within
        found: dict[int, Result] = {}
        seq = 1
        while len(found) < len(jobs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"results for {jobs[0].id}: {sorted(found)}")
            try:
                msg = await self.js.get_msg(
                    subjects.STREAM_RESULT, seq, subject=subjects.RESULT_REMOTE, next=True
                )
            except NotFoundError:
                await asyncio.sleep(0.05)
                continue
            assert msg.seq is not None and msg.data is not None
            seq = msg.seq + 1
            result = Result.decode(msg.data)
            if result.id == jobs[0].id:
                found[result.rcpt_index] = result
        return [found[job.rcpt_index] for job in jobs]

    async def result(self, job: RemoteJob, within: float = 30.0) -> Result:
        """The result of ``job`` on ``qmesh.result.remote``, read by sequence (the work-queue
        stream admits no second consumer next to send's)."""
        (found,) = await self.results([job], within)
        return found

    async def deliver(self, recipient: str, **job: object) -> Result:
        return await self.result(await self.job(recipient, **job))  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
async def close_peer_connections() -> AsyncIterator[None]:
    yield
    close_open_connections()
    await asyncio.sleep(0)  # let the transports finish closing inside this test's loop


@pytest.fixture
async def harness(nats_url: str, tmp_path: Path, control_dir: Path) -> AsyncIterator[Harness]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await provision_streams(js)
    await js.purge_stream(subjects.STREAM_REMOTE)  # no job of another test is delivered here
    tcpto = await ensure_kv(js, subjects.KV_TCPTO)
    for address in ("127.0.0.1", "::1"):  # no timeout memory left by another test
        await tcpto.purge(key_for(address))
    dns_server = DnsServer({})
    await dns_server.start()
    h = Harness(
        nats_url,
        js,
        FileStore(tmp_path / "store", "qmesh-queue"),
        control_dir,
        tmp_path,
        dns_server,
    )
    h.controls()
    yield h
    for running in h.running:
        await running.stop()
    await dns_server.stop()
    await nc.close()


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, int]]:
    s = Sink()
    server, port = await start_sink(s)
    yield s, port
    server.close()


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=sink.test",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(d / "cert.pem", d / "key.pem")
    return context


# -- the dialogue, through smtproutes ------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["files", "s3"])
async def test_remote_35_36_delivery_through_a_route_sends_the_exact_bytes(
    harness: Harness,
    sink: tuple[Sink, int],
    store_kind: str,
    request: pytest.FixtureRequest,
    unique: str,
) -> None:
    """REMOTE-10, REMOTE-30, REMOTE-35, REMOTE-36: LF to CR LF, dots stuffed (and unstuffed by
    the sink), a bare CR is a line break whose next line is stuffed, a partial last line
    completed; the result is published with qmail's text and the server's reply."""
    if store_kind == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        store = S3Store(
            s3_client(s3.endpoint, s3.access_key, s3.secret_key, secure=False, region="us-east-1"),
            f"queue-{unique}",
        )
        await store.ensure_bucket()
        harness.store = store
    s, port = sink
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    body = b"Subject: dots\n\n.leading dot\n..two\nx\r.\nmid\r\nno final LF"
    result = await harness.deliver("bob@sink.test", body=body)
    assert result.outcome == "delivered"
    assert result.report == (
        "Connected to 127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 sunk\n"
    )
    assert result.remote_host == "127.0.0.1"
    (got,) = s.messages
    assert got.sender == "joe@example.test" and got.recipients == ["bob@sink.test"]
    assert got.helo == "relay.example.test"  # helohost defaults to me
    assert got.data == (
        b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nx\r\n.\r\nmid\r\nno final LF\r\n"
    )


async def test_adddr_03_07_null_sender_and_quoted_local_part_on_the_wire(harness: Harness) -> None:
    """ADDR-03, REMOTE-47: the double-bounce sender is MAIL FROM:<>; ADDR-07: a local part
    with a space is quoted; REMOTE-44: SIZE= the DATA size; REMOTE-45: BODY=8BITMIME."""
    peer = Peer()
    server, port = await start_peer(peer)
    harness.controls(smtproutes=f":[127.0.0.1]:{port}")  # a catch-all smarthost
    await harness.start()
    body = b"Subject: caf\xc3\xa9\n\n.x\n"
    result = await harness.deliver('john "j" doe@far.test', sender="#@[]", body=body)
    server.close()
    assert result.outcome == "delivered"
    lines = peer.sessions[0]
    assert lines[0] == b"EHLO relay.example.test"
    assert lines[1] == b"MAIL FROM:<> SIZE=%d BODY=8BITMIME" % len(
        b"Subject: caf\xc3\xa9\r\n\r\n..x\r\n"
    )
    assert lines[2] == b'RCPT TO:<"john \\"j\\" doe"@far.test>'
    assert lines[3] == b"DATA"
    assert peer.messages == [b"Subject: caf\xc3\xa9\r\n\r\n..x\r\n.\r\n"]
    assert lines[-1] == b"QUIT"


@pytest.mark.parametrize(
    ("stage", "reply", "outcome", "text"),
    [
        (
            "rcpt",
            "550 5.1.1 no such user",
            "failed",
            "127.0.0.1 does not like recipient.\nRemote host said: 550 5.1.1 no such user\n"
            "Giving up on 127.0.0.1.\n",
        ),
        (
            "rcpt",
            "450 4.2.1 try later",
            "deferred",
            "127.0.0.1 does not like recipient.\nRemote host said: 450 4.2.1 try later\n"
            "Giving up on 127.0.0.1.\n",
        ),
        (
            "mail",
            "553 5.7.1 sender refused",
            "failed",
            "Connected to 127.0.0.1 but sender was rejected.\n"
            "Remote host said: 553 5.7.1 sender refused\n",
        ),
        (
            "mail",
            "451 4.3.0 later",
            "deferred",
            "Connected to 127.0.0.1 but sender was rejected.\nRemote host said: 451 4.3.0 later\n",
        ),
        (
            "data",
            "554 5.6.0 content refused",
            "failed",
            "127.0.0.1 failed after I sent the message.\n"
            "Remote host said: 554 5.6.0 content refused\n",
        ),
        (
            "data",
            "452 4.3.1 full",
            "deferred",
            "127.0.0.1 failed after I sent the message.\nRemote host said: 452 4.3.1 full\n",
        ),
    ],
)
async def test_remote_30_32_replies_become_outcomes_with_qmail_texts(
    harness: Harness, sink: tuple[Sink, int], stage: str, reply: str, outcome: str, text: str
) -> None:
    s, port = sink
    setattr(s, stage, reply)
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    assert (result.outcome, result.report) == (outcome, text)


async def test_remote_40_mixed_outcomes_in_one_transaction(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    """REMOTE-40, REMOTE-32, SEND-27: one job per recipient of one message and domain, one SMTP
    transaction for all; the recipient refused at RCPT fails with the RCPT reply, the others
    are delivered with the DATA reply, each job with its own result."""
    s, port = sink
    s.rcpt_answers["carol@sink.test"] = "550 5.1.1 no such user"
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    jobs = await harness.jobs(["bob@sink.test", "carol@sink.test", "dave@sink.test"])
    await harness.start()  # all three are there for the first fetch
    bob, carol, dave = await harness.results(jobs)
    (got,) = s.messages
    assert got.recipients == ["bob@sink.test", "dave@sink.test"]
    assert (
        got.data == b"Received: (qmail 1 invoked by inject); 5 Nov 2024 07:03:09 -0000\r\n"
        b"Subject: hi\r\n\r\nhello\r\n"
    )
    accepted = "Connected to 127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 sunk\n"
    for result in (bob, dave):
        assert (result.outcome, result.report) == ("delivered", accepted)
        assert result.remote_host == "127.0.0.1"
    assert carol.outcome == "failed"
    assert carol.report == (
        "127.0.0.1 does not like recipient.\nRemote host said: 550 5.1.1 no such user\n" + accepted
    )
    assert [(r.rcpt_index, r.attempt) for r in (bob, carol, dave)] == [(0, 1), (1, 1), (2, 1)]
    for _ in range(100):  # every job is acknowledged (just after its result is published)
        info = await harness.js.consumer_info(subjects.STREAM_REMOTE, subjects.CONSUMER_REMOTE)
        if info.num_ack_pending == 0 and info.num_pending == 0:
            break
        await asyncio.sleep(0.05)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_remote_30_data_command_refused_and_multiline_reply(harness: Harness) -> None:
    peer = Peer(answers={"DATA": b"554-5.3.0 no data\r\n554 5.3.0 for you"})
    server, port = await start_peer(peer)
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    server.close()
    assert result.outcome == "failed"
    assert result.report == (
        "127.0.0.1 failed on DATA command.\n"
        "Remote host said: 554-5.3.0 no data\n554 5.3.0 for you\n"
    )


async def test_remote_33_connection_lost_after_the_dot_is_a_possible_duplicate(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    s, port = sink
    s.drop_after_data = True
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    assert result.outcome == "deferred"
    assert result.report == (
        "Connected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n"
    )


async def test_remote_33_connection_lost_before_data_is_not_a_duplicate(harness: Harness) -> None:
    peer = Peer(drop_at="RCPT")
    server, port = await start_peer(peer)
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    server.close()
    assert result.outcome == "deferred"
    assert result.report == "Connected to 127.0.0.1 but connection died. (#4.4.2)\n"


async def test_remote_33_timeoutremote_bounds_each_read(harness: Harness) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        OPEN.add(writer)  # closed after the test by close_peer_connections
        await asyncio.sleep(30)  # never greets

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}", timeoutremote="1")
    await harness.start()
    started = time.monotonic()
    result = await harness.deliver("bob@sink.test")
    server.close()
    assert result.report == "Connected to 127.0.0.1 but connection died. (#4.4.2)\n"
    assert time.monotonic() - started < 15


async def test_remote_41_ehlo_refused_then_helo_without_extensions(harness: Harness) -> None:
    peer = Peer(ehlo=(b"502 5.5.1 what is EHLO",))
    server, port = await start_peer(peer)
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}", helohost="out.example.test")
    await harness.start()
    result = await harness.deliver("bob@sink.test", body=b"8bit \xff\n")
    server.close()
    assert result.outcome == "delivered"
    lines = peer.sessions[0]
    assert lines[:3] == [
        b"EHLO out.example.test",
        b"HELO out.example.test",
        b"MAIL FROM:<joe@example.test>",
    ]  # no SIZE, no BODY without EHLO


async def test_remote_30_name_rejected(harness: Harness) -> None:
    peer = Peer(ehlo=(b"550 5.7.1 go away",), answers={"HELO": b"550 5.7.1 still no"})
    server, port = await start_peer(peer)
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    server.close()
    assert (result.outcome, result.report) == (
        "deferred",
        "Connected to 127.0.0.1 but my name was rejected.\nRemote host said: 550 5.7.1 still no\n",
    )


async def test_remote_20_30_greeting_failed_then_the_next_address(harness: Harness) -> None:
    """A relay name with AAAA ::1 (refusing greeting) and A 127.0.0.1 (a sink): REMOTE-20.

    REMOTE-15: AAAA addresses are used too (the last report is from ::1).
    """
    bad = Peer(greeting=b"554 5.3.2 not now")
    good = Sink()
    good_server, port = await start_sink(good)
    bad_server, _ = await start_peer(bad, "::1", port)
    harness.dns.records.update(
        {
            ("relay.test", "A"): ["127.0.0.1"],
            ("relay.test", "AAAA"): ["::1"],
            ("relay.test", "MX"): ["10 elsewhere.test"],
        }
    )
    harness.controls(smtproutes=f"sink.test:relay.test:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    assert result.outcome == "delivered" and result.remote_host == "127.0.0.1"
    assert len(good.messages) == 1 and bad.sessions == []  # A first, then AAAA
    # with only the refusing address, the greeting failure is the report
    del harness.dns.records[("relay.test", "A")]
    result = await harness.deliver("bob@sink.test")
    good_server.close()
    bad_server.close()
    assert (result.outcome, result.report) == (
        "deferred",
        "Connected to ::1 but greeting failed.\nRemote host said: 554 5.3.2 not now\n",
    )
    assert ("relay.test", "MX", "udp") not in harness.dns.queries  # REMOTE-10: A/AAAA only


async def test_remote_21_no_connection(harness: Harness) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: refused
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    assert (result.outcome, result.report) == ("deferred", report.NO_CONNECTION)
    assert result.remote_host is None


# -- modern client behaviour ----------------------------------------------------------------


async def test_remote_42_starttls_when_offered(
    harness: Harness, tls_context: ssl.SSLContext
) -> None:
    s = Sink()
    server, port = await start_sink(s, tls_context=tls_context)
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    server.close()
    assert result.outcome == "delivered"
    assert s.messages[0].tls is True


async def test_remote_42_failed_handshake_is_retried_once_in_plaintext(harness: Harness) -> None:
    peer = Peer(ehlo=(b"250-peer.test", b"250 STARTTLS"), tls_garbage=True)
    server, port = await start_peer(peer)
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    server.close()
    assert result.outcome == "delivered"
    first, second = peer.sessions
    assert first[-1] == b"STARTTLS"
    assert b"STARTTLS" not in second and second[1].startswith(b"MAIL FROM:")


async def test_remote_44_too_big_for_the_advertised_size(harness: Harness) -> None:
    peer = Peer(ehlo=(b"250-peer.test", b"250 SIZE 50"))
    server, port = await start_peer(peer)
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test", body=b"x" * 60 + b"\n")
    server.close()
    assert (result.outcome, result.report) == ("failed", report.TOO_BIG)
    assert not any(line.startswith(b"MAIL") for line in peer.sessions[0])


async def test_remote_46_smtputf8_needed_but_not_offered(harness: Harness) -> None:
    peer = Peer()
    server, port = await start_peer(peer)
    harness.controls(smtproutes=f":127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("jörg@bücher.test")
    server.close()
    assert (result.outcome, result.report) == ("failed", report.NO_SMTPUTF8)


async def test_remote_46_smtputf8_sent_unquoted_when_offered(harness: Harness) -> None:
    peer = Peer(ehlo=(b"250-peer.test", b"250 SMTPUTF8"))
    server, port = await start_peer(peer)
    harness.controls(smtproutes=f":127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("jörg@bücher.test", smtputf8=True)
    server.close()
    assert result.outcome == "delivered"
    assert peer.sessions[0][1] == b"MAIL FROM:<joe@example.test> SMTPUTF8"
    assert peer.sessions[0][2] == "RCPT TO:<jörg@bücher.test>".encode()


# -- controls and the body ------------------------------------------------------------------


async def test_remote_34_no_helohost_and_no_me(harness: Harness, sink: tuple[Sink, int]) -> None:
    _, port = sink
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    (harness.control / "me").unlink()
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    assert (result.outcome, result.report) == ("deferred", report.CONTROLS)


async def test_remote_34_body_missing_is_unreadable(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    s, port = sink
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@sink.test", body=None)
    assert (result.outcome, result.report) == ("deferred", report.MESSAGE_UNREADABLE)
    assert s.messages == []


async def test_remote_02_routes_are_read_per_job(harness: Harness) -> None:
    first, second = Sink(), Sink()
    (server1, port1), (server2, port2) = await start_sink(first), await start_sink(second)
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port1}")
    running = await harness.start()
    assert (await harness.deliver("bob@sink.test")).outcome == "delivered"
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port2}")
    watcher = running.service.components[0]
    assert await watcher.reload_now()  # type: ignore[attr-defined]
    assert (await harness.deliver("bob@sink.test")).outcome == "delivered"
    server1.close()
    server2.close()
    assert (len(first.messages), len(second.messages)) == (1, 1)


async def test_readiness_names_nats_store_and_consumer(harness: Harness) -> None:
    running = await harness.start()
    for _ in range(200):  # what /readyz would answer, polled for up to 10 s
        failing = await running.readiness.failing()
        if not failing:
            break
        await asyncio.sleep(0.05)
    assert failing == {}
    assert set(running.readiness.checks) == {"nats", "queue-store", "job-consumer"}


# -- DNS ------------------------------------------------------------------------------------

MX_RECORDS: Records = {
    ("order.test", "MX"): ["10 v6.order.test", "20 v4.order.test"],
    ("v6.order.test", "AAAA"): ["::1"],
    ("v4.order.test", "A"): ["127.0.0.1"],
    ("plain.test", "A"): ["127.0.0.1"],
    ("nullmx.test", "MX"): ["0 ."],
    ("self.test", "MX"): ["10 me.self.test", "20 v4.order.test"],
    ("me.self.test", "A"): ["192.0.2.1"],
    ("backup.test", "MX"): ["10 v4.order.test", "20 me.self.test"],
    ("primary.test", "MX"): ["5 v4.order.test", "10 me.self.test"],
}


@pytest.fixture
async def mx_world(harness: Harness, sink: tuple[Sink, int]) -> tuple[Sink, int]:
    harness.dns.records.update(MX_RECORDS)
    harness.dns.servfail.add("broken.test")
    await harness.start(smtp_port=sink[1])
    return sink


async def test_remote_13_preference_order_with_fallback(
    harness: Harness, mx_world: tuple[Sink, int]
) -> None:
    """MX 10 is ::1 where nothing listens on the port; MX 20 (127.0.0.1) gets the mail.

    REMOTE-01: host = the recipient's domain; the job's one recipient is sent as is.
    """
    result = await harness.deliver("bob@order.test")
    assert result.outcome == "delivered" and result.remote_host == "127.0.0.1"
    assert mx_world[0].messages[0].recipients == ["bob@order.test"]


async def test_remote_13_implicit_mx(harness: Harness, mx_world: tuple[Sink, int]) -> None:
    result = await harness.deliver("bob@plain.test")
    assert result.outcome == "delivered" and result.remote_host == "127.0.0.1"


async def test_remote_17_no_cname_rewriting(harness: Harness, mx_world: tuple[Sink, int]) -> None:
    """REMOTE-17: the recipient's domain is never replaced by a CNAME target, nor looked up."""
    harness.dns.records.update(
        {
            ("alias.test", "MX"): ["10 v4.order.test"],
            ("alias.test", "CNAME"): ["canonical.test."],
        }
    )
    harness.dns.servfail.add("canonical.test")
    result = await harness.deliver("bob@alias.test")
    assert result.outcome == "delivered" and result.remote_host == "127.0.0.1"
    assert mx_world[0].messages[-1].recipients == ["bob@alias.test"]
    assert not [q for q in harness.dns.queries if q[1] == "CNAME" or q[0] == "canonical.test"]


@pytest.mark.parametrize(
    ("recipient", "outcome", "text"),
    [
        ("bob@nx.test", "failed", "Sorry, I couldn't find any host named nx.test. (#5.1.2)\n"),
        ("bob@nullmx.test", "failed", report.NULL_MX),
        ("bob@broken.test", "deferred", report.DNS_TEMPORARY),
        ("bob@self.test", "failed", report.AMBIGUOUS_MX),
    ],
)
async def test_remote_13_14_16_dns_failures(
    harness: Harness, mx_world: tuple[Sink, int], recipient: str, outcome: str, text: str
) -> None:
    result = await harness.deliver(recipient)
    assert (result.outcome, result.report) == (outcome, text)
    assert mx_world[0].messages == []


async def test_remote_16_only_exchangers_better_than_this_system(
    harness: Harness, mx_world: tuple[Sink, int]
) -> None:
    assert (await harness.deliver("bob@backup.test")).outcome == "delivered"
    assert (await harness.deliver("bob@primary.test")).outcome == "delivered"


async def test_remote_13_ip_literal_is_connected_directly(
    harness: Harness, mx_world: tuple[Sink, int]
) -> None:
    result = await harness.deliver("bob@[127.0.0.1]")
    assert result.outcome == "delivered"
    assert not [q for q in harness.dns.queries if q[0].startswith("[")]


async def test_remote_13_answers_larger_than_udp_allows_come_over_tcp(
    harness: Harness, mx_world: tuple[Sink, int]
) -> None:
    many = [f"{50 + i} mx{i:02d}.{'long-label-' * 4}big.test" for i in range(60)]
    harness.dns.records[("big.test", "MX")] = ["1 v4.order.test", *many]
    result = await harness.deliver("bob@big.test")
    assert result.outcome == "delivered"
    assert ("big.test", "MX", "tcp") in harness.dns.queries


# -- the timeout memory ---------------------------------------------------------------------


async def test_remote_22_shared_record_skips_the_address_and_success_clears_it(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    s, port = sink
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    kv = await ensure_kv(harness.js, subjects.KV_TCPTO)
    key = key_for("127.0.0.1")
    await kv.put(key, encode(Record(time.time(), 2)))  # another worker saw two timeouts
    await harness.start()
    result = await harness.deliver("bob@sink.test")
    assert (result.outcome, result.report) == ("deferred", report.NO_CONNECTION)
    assert s.messages == []
    await kv.put(key, encode(Record(time.time(), 1)))  # one timeout: not skipped
    assert (await harness.deliver("bob@sink.test")).outcome == "delivered"
    with pytest.raises(KeyNotFoundError):  # a success forgets the address
        await kv.get(key)


async def test_remote_22_a_connect_timeout_is_recorded(harness: Harness) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once the backlog is full, SYNs go unanswered
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    kv = await ensure_kv(harness.js, subjects.KV_TCPTO)
    key = key_for("127.0.0.1")
    try:
        await kv.purge(key)
        harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}", timeoutconnect="1")
        await harness.start()
        result = await harness.deliver("bob@sink.test")
        assert (result.outcome, result.report) == ("deferred", report.NO_CONNECTION)
        entry = await kv.get(key)
        record = decode(entry.value)
        assert record is not None and record.errors == 1
    finally:
        await kv.purge(key)
        for filler in fillers:
            filler.close()
        listener.close()


# -- QMTP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "outcome", "text"),
    [
        (
            b"Kok 1732510000 qp 77",
            "delivered",
            "Connected to 127.0.0.1 accepted message.\nRemote host said: ok 1732510000 qp 77\n",
        ),
        (
            b"Zmailbox busy (#4.2.1)",
            "deferred",
            "127.0.0.1 failed after I sent the message.\nRemote host said: mailbox busy (#4.2.1)\n",
        ),
        (
            b"Dno such user (#5.1.1)",
            "failed",
            "127.0.0.1 failed after I sent the message.\nRemote host said: no such user (#5.1.1)\n",
        ),
    ],
)
async def test_qmtp_30_33_qmtproutes_deliver_by_qmtp(
    harness: Harness, response: bytes, outcome: str, text: str
) -> None:
    peer = QmtpPeer(response=response)
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    harness.controls(qmtproutes=f"q.test:127.0.0.1:{port}", smtproutes="q.test:127.0.0.1:1")
    await harness.start()
    body = b"Subject: q\n\nline\r\nno final LF"
    result = await harness.deliver("bob@q.test", sender="#@[]", body=body)
    server.close()
    assert (result.outcome, result.report) == (outcome, text)
    # QMTP-31: LF-encoding, the stored form unchanged; QMTP-33: the null sender is empty
    assert peer.packages == [(b"\n" + body, b"", [b"bob@q.test"])]


async def test_qmtp_32_no_response_after_the_package_is_a_possible_duplicate(
    harness: Harness,
) -> None:
    peer = QmtpPeer(drop=True)
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    harness.controls(qmtproutes=f"q.test:127.0.0.1:{port}")
    await harness.start()
    result = await harness.deliver("bob@q.test")
    server.close()
    assert (result.outcome, result.report) == (
        "deferred",
        "Connected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n",
    )
