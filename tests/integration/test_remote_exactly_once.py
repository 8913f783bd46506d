"""Hardening #10: remote delivers a job once, even when it gets it twice (a send that died
between publishing a pass and recording it, after a NATS restart made JetStream forget the
job's Nats-Msg-Id), and rides out a NATS restart while it holds jobs without delivering any of
them again (ARCH-11, REMOTE-32, ARCH-03)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from qmesh.bus.jetstream import JetStreamPublisher
from qmesh.bus.provision import ConsumerSpec, provision
from qmesh.cli.natsd import NatsServer, start_nats_server
from qmesh.contract import subjects
from qmesh.contract.events import RemoteJob
from qmesh.store.files import FileStore
from tests.dnsserver import DnsFixture
from tests.integration.remote_peers import Sink, start_sink
from tests.integration.test_remote import Harness, close_peer_connections, harness, sink
from tests.servers import free_ports

pytestmark = pytest.mark.integration

__all__ = ["close_peer_connections", "harness", "sink"]


async def drained(js: nats.js.JetStreamContext) -> None:
    """Every job acknowledged: nothing left that could be delivered again."""
    for _ in range(600):
        info = await js.consumer_info(subjects.STREAM_REMOTE, subjects.CONSUMER_REMOTE)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"jobs left: {info}")


async def test_hardening_10_a_job_published_twice_is_delivered_once(
    harness: Harness, sink: tuple[Sink, int]
) -> None:
    s, port = sink
    harness.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    await harness.start()
    job = await harness.job("bob@sink.test")
    first = await harness.result(job)
    assert first.outcome == "delivered"
    # The same job again under another Nats-Msg-Id: what JetStream lets through once a
    # restart has forgotten the first one's (work-queue streams delete acknowledged jobs).
    await JetStreamPublisher(harness.js).publish(
        subjects.JOB_REMOTE, job.encode(), msg_id=job.msg_id() + ".again"
    )
    await drained(harness.js)
    assert len(s.messages) == 1


@dataclasses.dataclass
class SlowSink(Sink):
    """Takes its time over the end of the data, as a busy MX does."""

    delay: float = 1.5
    started: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.started += 1
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[list[NatsServer]]:
    """A nats-server on a port of its own that the test may kill and start again."""
    port = free_ports(1)[0]
    servers = [start_nats_server(tmp_path / "nats", port=port)]
    yield servers
    servers[-1].stop()


async def test_hardening_10_nats_restart_while_remote_holds_jobs_delivers_each_once(
    restartable: list[NatsServer],
    tmp_path: Path,
    control_dir: Path,
    default_consumers: tuple[ConsumerSpec, ...],
) -> None:
    server = restartable[0]
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await provision(js, default_consumers)  # the setup step: streams, buckets, consumers
    dns_server = DnsFixture({})
    dns_server.start()
    slow = SlowSink()
    smtp_server, port = await start_sink(slow)
    h = Harness(
        server.url,
        js,
        FileStore(tmp_path / "store", "qmesh-queue"),
        control_dir,
        tmp_path,
        dns_server,
    )
    h.controls(smtproutes=f"sink.test:127.0.0.1:{port}")
    try:
        await h.start()
        jobs: list[RemoteJob] = []
        for i in range(6):
            jobs.append(await h.job(f"user{i}@sink.test"))
        for _ in range(200):  # remote holds them all, in the middle of their transactions
            if slow.started == len(jobs):
                break
            await asyncio.sleep(0.02)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        await asyncio.sleep(1.0)
        restartable.append(
            start_nats_server(tmp_path / "nats", port=int(server.url.rsplit(":", 1)[1]))
        )
        await drained(js)
        for job in jobs:
            assert (await h.result(job)).outcome == "delivered"
        got = sorted(r for m in slow.messages for r in m.recipients)
        assert got == sorted(j.recipient for j in jobs)  # each exactly once
    finally:
        for running in h.running:
            await running.stop()
        smtp_server.close()
        dns_server.stop()
        await nc.close()
