"""The port ``qmesh up`` gives NATS's monitoring endpoint never is one a service is set to
take: NATS starts first, and a random port could be the health port a service binds a moment
later (hardening #9, a service that cannot bind its port is never ready)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from qmesh.cli.up import configured_ports, monitor_port


def test_configured_ports_are_the_defaults_and_what_the_environment_sets() -> None:
    ports = configured_ports({"QMESH_LOCAL_HTTP_PORT": "40001", "QMESH_SMTP_PORT": "40002"})
    assert {40001, 40002, 8081, 2110, 8088, 8089} <= ports
    assert 8083 not in ports  # local's default, replaced
    assert 2525 not in ports


def test_a_random_port_that_a_service_is_set_to_take_is_passed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed_out: Iterator[int] = iter([8083, 2525, 40100])

    class Socket:
        def __enter__(self) -> Socket:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(handed_out)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(socket, "socket", Socket)  # the one socket monitor_port opens
    assert monitor_port(configured_ports({})) == 40100
