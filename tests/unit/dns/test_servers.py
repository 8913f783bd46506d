"""QMESH_DNS_SERVERS: what is accepted, what stops startup (issue 11)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from qmesh.cli.up import Refused, cluster_env, prepare
from qmesh.dns.servers import Server, parse_servers
from qmesh.runtime.settings import Settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("  ", ()),
        ("127.0.0.1", (Server("127.0.0.1", 53),)),
        ("127.0.0.1:5353", (Server("127.0.0.1", 5353),)),
        ("10.0.0.1, 10.0.0.2:54", (Server("10.0.0.1"), Server("10.0.0.2", 54))),
        ("::1", (Server("::1"),)),
        ("[::1]:5353", (Server("::1", 5353),)),
        ("[2001:db8::1]", (Server("2001:db8::1"),)),
        ("Resolver.Example.Test:53", (Server("resolver.example.test"),)),
    ],
)
def test_accepted(value: str, expected: tuple[Server, ...]) -> None:
    assert parse_servers(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:dns",
        "127.0.0.1,,10.0.0.1",
        "[::1",
        "[::1]5353",
        "[not-an-ip]:53",
        "1:2:3",
        "bad_host",
        "-bad.example",
        "host name",
        "ex\u00e4mple.test",
        "a" * 64 + ".test",
        "http://127.0.0.1/",
        ",".join(["127.0.0.1"] * 17),
        "127.0.0.1:53\x00",
        "127.0.0.1\x00",
    ],
)
def test_refused(value: str) -> None:
    with pytest.raises(ValueError, match="QMESH_DNS_SERVERS"):
        parse_servers(value)


def test_text_round_trips() -> None:
    servers = parse_servers("127.0.0.1, 127.0.0.1:5353, [::1]:54, ::1")
    assert [s.text() for s in servers] == ["127.0.0.1", "127.0.0.1:5353", "[::1]:54", "[::1]"]
    assert parse_servers(",".join(s.text() for s in servers)) == servers


def test_settings_refuse_a_bad_value() -> None:
    assert Settings(dns_servers="127.0.0.1:5353").dns_servers == "127.0.0.1:5353"
    with pytest.raises(ValidationError, match="QMESH_DNS_SERVERS"):
        Settings(dns_servers="127.0.0.1:x")


def test_up_passes_the_servers_on(tmp_path) -> None:
    env = cluster_env(
        {"QMESH_DNS_SERVERS": " 127.0.0.1:5353 ,::1"}, "nats://x:1", tmp_path, tmp_path
    )
    assert env["QMESH_DNS_SERVERS"] == "127.0.0.1:5353,[::1]"
    assert cluster_env({}, "nats://x:1", tmp_path, tmp_path)["QMESH_DNS_SERVERS"] == ""


def test_up_refuses_a_bad_value(tmp_path) -> None:
    with pytest.raises(Refused, match="QMESH_DNS_SERVERS"):
        prepare({"QMESH_DNS_SERVERS": "127.0.0.1:99999", "QMESH_DATA": str(tmp_path)})
