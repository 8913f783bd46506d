"""``qmesh provision`` against a NATS cluster that has not elected its leader yet.

The chart starts its setup Job beside the NATS servers. Until a majority of them is up, a
server answers JetStream requests with 503 ("JetStream not enabled for account") or not at
all; the setup step waits for the cluster instead of failing (hardening #3: the setup step
makes every stream, bucket and consumer).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from qmesh.bus.provision import JetStreamUnavailable, consumer_specs, provision
from qmesh.cli.natsd import NatsServer, start_nats_server
from qmesh.contract import subjects
from qmesh.control import load_controls
from tests.servers import free_ports

QMESH = [sys.executable, "-m", "qmesh.cli.main"]


class Cluster:
    """Three nats-servers on loopback, routed to each other, started one by one."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.client = free_ports(3)
        self.routes = free_ports(3)
        self.servers: list[NatsServer] = []

    def url(self, n: int) -> str:
        return f"nats://127.0.0.1:{self.client[n]}"

    def start(self, n: int) -> None:
        peers = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
        config = self.base / f"n{n}.conf"
        config.write_text(
            f'server_name: "n{n}"\n'
            f"cluster {{ name: provision-test, listen: 127.0.0.1:{self.routes[n]},"
            f" routes: [{peers}] }}\n"
        )
        self.servers.append(
            start_nats_server(self.base / f"n{n}", port=self.client[n], config=config)
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.start(0)
    yield c
    c.stop()


def test_provision_waits_for_the_cluster_to_elect_a_leader(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "QMESH_NATS_URL": cluster.url(0),
        "QMESH_JS_REPLICAS": "3",
        "QMESH_CONTROL": str(tmp_path / "control"),
    }
    (tmp_path / "control").mkdir()
    job = subprocess.Popen(
        [*QMESH, "provision"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert job.stderr is not None
        said = []
        for line in job.stderr:  # one server of three: no leader, every JetStream request refused
            said.append(line)
            if "nats.jetstream_waiting" in line:
                break
        else:
            pytest.fail(f"qmesh provision ended without waiting: {''.join(said)[-2000:]}")
        assert job.poll() is None
        cluster.start(1)
        cluster.start(2)
        out, err = job.communicate(timeout=90)
    finally:
        if job.poll() is None:  # a failed check leaves no command waiting behind the test
            job.kill()
            job.communicate()
    assert job.returncode == 0, err[-2000:]
    assert "streams, buckets and consumers ready" in out

    async def replicas() -> int:
        nc = await nats.connect(cluster.url(2))
        try:
            info = await nc.jetstream().stream_info(subjects.STREAM_TODO)
            return info.config.num_replicas or 1
        finally:
            await nc.close()

    assert asyncio.run(replicas()) == 3


def test_provision_gives_up_with_a_temporary_error_when_no_leader_comes(
    cluster: Cluster, tmp_path: Path
) -> None:
    specs = consumer_specs(load_controls(tmp_path, {}))

    async def attempt() -> None:
        nc = await nats.connect(cluster.url(0))
        try:
            await provision(nc.jetstream(), specs, 3, wait=2)
        finally:
            await nc.close()

    with pytest.raises(JetStreamUnavailable, match="did not answer within 2s"):
        asyncio.run(attempt())
