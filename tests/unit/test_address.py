"""One parse of a client's address serves the per-client cap, proxyclients and relayclients."""

from __future__ import annotations

import ipaddress

from qmesh.address import client_address
from qmesh.proxy import trusted
from qmesh.runtime.listeners import client_key


def test_ipv4_mapped_ipv6_is_judged_as_ipv4() -> None:
    assert client_address("::ffff:192.0.2.7") == ipaddress.ip_address("192.0.2.7")
    assert trusted("::ffff:192.0.2.7", [ipaddress.ip_network("192.0.2.0/24")])
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_zone_id_is_dropped_and_ipv6_clients_count_by_64() -> None:
    assert client_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:ffff::9") == client_key("2001:db8:1:2::1")


def test_a_name_is_not_an_address() -> None:
    assert client_address("unknown") is None
    assert client_key("unknown") == "unknown"
    assert not trusted("unknown", [ipaddress.ip_network("0.0.0.0/0")])
