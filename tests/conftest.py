"""Session fixtures: a real nats-server and a real S3 server (SeaweedFS), each on free ports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from qmesh.bus.provision import ConsumerSpec, consumer_specs, provision
from qmesh.cli.natsd import NatsServer, start_nats_server
from qmesh.control import load_controls
from tests.servers import S3Server, start_seaweedfs


def provisioned(url: str, consumers: tuple[ConsumerSpec, ...]) -> None:
    """What the setup step makes before any service starts (hardening #3): services only look
    streams, buckets and consumers up."""

    async def setup() -> None:
        nc = await nats.connect(url)
        try:
            await provision(nc.jetstream(), consumers)
        finally:
            await nc.close()

    asyncio.run(setup())


@pytest.fixture(scope="session")
def default_consumers(tmp_path_factory: pytest.TempPathFactory) -> tuple[ConsumerSpec, ...]:
    return consumer_specs(load_controls(tmp_path_factory.mktemp("no-controls"), {}))


@pytest.fixture(scope="session")
def nats_url(
    tmp_path_factory: pytest.TempPathFactory, default_consumers: tuple[ConsumerSpec, ...]
) -> Iterator[str]:
    server = start_nats_server(tmp_path_factory.mktemp("nats"))
    provisioned(server.url, default_consumers)
    yield server.url
    server.stop()


@pytest.fixture
def private_nats(
    tmp_path: Path, default_consumers: tuple[ConsumerSpec, ...]
) -> Iterator[NatsServer]:
    """A nats-server of this test alone: for tests that read a whole stream or stop the server."""
    server = start_nats_server(tmp_path / "nats")
    provisioned(server.url, default_consumers)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def unique() -> str:
    """A short unique token for bucket, stream and account names of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def control_dir(tmp_path: Path) -> Path:
    d = tmp_path / "control"
    d.mkdir()
    return d
