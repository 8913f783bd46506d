"""JetStream writes on disk before the ack, proven on a real nats-server (throughput #10):
the server started the way ``qmesh up`` starts it reports ``sync_always`` on its monitoring
endpoint, and one started without the setting is named in ``qmesh up``'s warning."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from qmesh.bus.jetstream import inbox_prefix
from qmesh.cli.natsd import NatsServer, durability_problem, read_varz, start_nats_server
from qmesh.cli.natsusers import password_file, write_server_config
from qmesh.cli.up import durability_line
from qmesh.contract import subjects

pytestmark = pytest.mark.integration


@pytest.fixture
def servers() -> Iterator[list[NatsServer]]:
    started: list[NatsServer] = []
    yield started
    for server in started:
        server.stop()


def test_qmesh_ups_way_fsyncs_every_write_and_keeps_its_users(
    tmp_path: Path, servers: list[NatsServer]
) -> None:
    data = tmp_path / "data"
    users = write_server_config(data, data / "nats" / "qmesh-up.conf")
    server = start_nats_server(data / "nats", config=users, monitor=-1)
    servers.append(server)
    assert server.monitor is not None
    varz = read_varz(server.monitor)
    assert varz["jetstream"]["config"]["sync_always"] is True
    assert varz["auth_required"] is True  # the included users file is in force too
    assert durability_problem(varz) is None
    assert "WARNING" not in durability_line(server)

    async def publish() -> None:  # JetStream works with the setting: a stream takes a write
        nc = await nats.connect(
            server.url,
            user="qmesh-admin",
            password=password_file(data, "admin").read_text().strip(),
            inbox_prefix=inbox_prefix("admin"),
        )
        try:
            js = nc.jetstream()
            await js.add_stream(name="SYNCED", subjects=[subjects.TODO])
            ack = await js.publish(subjects.TODO, b"x")
            assert ack.seq == 1
        finally:
            await nc.close()

    asyncio.run(publish())


def test_a_server_without_sync_always_is_warned_about(
    tmp_path: Path, servers: list[NatsServer]
) -> None:
    server = start_nats_server(tmp_path / "nats", sync_always=False, monitor=-1)
    servers.append(server)
    assert server.monitor is not None
    problem = durability_problem(read_varz(server.monitor))
    assert problem is not None and "sync_interval: always" in problem
    line = durability_line(server)
    assert line.startswith("qmesh: WARNING: NATS acknowledges JetStream writes before")


def test_no_monitoring_endpoint_is_a_warning_not_a_crash(
    tmp_path: Path, servers: list[NatsServer]
) -> None:
    server = start_nats_server(tmp_path / "nats")
    servers.append(server)
    assert server.monitor is None
    assert "WARNING" in durability_line(server)
    server.stop()
    gone = NatsServer(server.process, server.url, server.log, "http://127.0.0.1:9")
    assert "WARNING: cannot tell" in durability_line(gone)
