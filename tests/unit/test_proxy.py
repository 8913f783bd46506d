"""PROXY protocol v1/v2 parsing and the trust decision (SMTPD-86; pop3d alike)."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import pytest

from qmesh.proxy import Peer, ProxyError, parse_v1, parse_v2, read_header, trusted

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
BALANCERS = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def v2(command: int, family: int, body: bytes) -> tuple[bytes, bytes]:
    return V2_SIG + bytes([0x20 | command, family]) + struct.pack("!H", len(body)), body


def v4_body(src: str, dst: str, sport: int, dport: int, tlv: bytes = b"") -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HH", sport, dport)
        + tlv
    )


@pytest.mark.parametrize(
    ("line", "peer"),
    [
        (b"PROXY TCP4 203.0.113.7 10.1.2.3 51234 2525\r\n", Peer("203.0.113.7", 51234)),
        (b"PROXY TCP6 2001:db8::7 fd00::1 40000 2110\r\n", Peer("2001:db8::7", 40000)),
        (b"PROXY UNKNOWN\r\n", None),
        (b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", None),
    ],
)
def test_smtpd_86_v1_lines(line: bytes, peer: Peer | None) -> None:
    assert parse_v1(line) == peer


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 203.0.113.7 10.1.2.3 51234 2525\n",  # bare LF
        b"PROXY TCP4 2001:db8::7 10.1.2.3 51234 2525\r\n",  # family mismatch
        b"PROXY TCP4 203.0.113.7 10.1.2.3 051234 2525\r\n",  # leading zero
        b"PROXY TCP4 203.0.113.7 10.1.2.3 70000 2525\r\n",  # port range
        b"PROXY TCP4 203.0.113.7 10.1.2.3 1\r\n",  # missing field
        b"PROXY UDP4 203.0.113.7 10.1.2.3 1 2\r\n",
        b"PROXY TCP4 " + b"1" * 100 + b"\r\n",  # longer than 107 bytes
        b"EHLO client.example\r\n",
    ],
)
def test_smtpd_86_v1_malformed_lines_are_refused(line: bytes) -> None:
    with pytest.raises(ProxyError):
        parse_v1(line)


def test_smtpd_86_v2_tcp4_with_tlvs() -> None:
    fixed, body = v2(1, 0x11, v4_body("198.51.100.9", "10.0.0.2", 443, 2995, tlv=b"\x04\x00\x01x"))
    assert parse_v2(fixed, body) == Peer("198.51.100.9", 443)


def test_smtpd_86_v2_tcp6() -> None:
    src, dst = ipaddress.IPv6Address("2001:db8::42"), ipaddress.IPv6Address("fd00::2")
    fixed, body = v2(1, 0x21, src.packed + dst.packed + struct.pack("!HH", 5555, 2525))
    assert parse_v2(fixed, body) == Peer("2001:db8::42", 5555)


@pytest.mark.parametrize(("command", "family"), [(0, 0x11), (1, 0x00)])
def test_smtpd_86_v2_local_and_unspec_keep_the_socket_address(command: int, family: int) -> None:
    fixed, body = v2(command, family, v4_body("1.2.3.4", "5.6.7.8", 1, 2))
    assert parse_v2(fixed, body) is None


@pytest.mark.parametrize(
    ("fixed", "body"),
    [
        v2(1, 0x12, v4_body("1.2.3.4", "5.6.7.8", 1, 2)),  # UDP
        v2(1, 0x11, b"\x01\x02"),  # short address block
        (b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c", v4_body("1.2.3.4", "5.6.7.8", 1, 2)),  # v3
        (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0d", v4_body("1.2.3.4", "5.6.7.8", 1, 2)),  # length
    ],
)
def test_smtpd_86_v2_malformed_headers_are_refused(fixed: bytes, body: bytes) -> None:
    with pytest.raises(ProxyError):
        parse_v2(fixed, body)


@pytest.mark.parametrize(
    ("peer", "ok"),
    [
        ("10.9.8.7", True),
        ("::ffff:10.9.8.7", True),  # a dual-stack socket's view of an IPv4 balancer
        ("fd00::5", True),
        ("192.0.2.1", False),
        ("2001:db8::1", False),
        ("not-an-address", False),
    ],
)
def test_smtpd_86_only_balancer_addresses_are_trusted(peer: str, ok: bool) -> None:
    assert trusted(peer, BALANCERS) is ok


async def read(data: bytes, *, eof: bool = True) -> tuple[Peer | None, bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    peer = await read_header(reader.readexactly, within=0.2)
    return peer, await reader.read()  # what the protocol reads next


async def test_smtpd_86_read_header_leaves_the_protocol_bytes() -> None:
    line = b"PROXY TCP4 203.0.113.7 10.1.2.3 51234 2525\r\nUSER alice\r\n"
    assert await read(line) == (Peer("203.0.113.7", 51234), b"USER alice\r\n")
    fixed, body = v2(1, 0x11, v4_body("198.51.100.9", "10.0.0.2", 443, 2995))
    assert await read(fixed + body + b"\x16\x03\x01") == (
        Peer("198.51.100.9", 443),
        b"\x16\x03\x01",
    )


@pytest.mark.parametrize(
    ("data", "eof"),
    [
        (b"USER alice\r\n", True),  # a trusted peer that did not send a header
        (b"PRO", True),  # cut short
        (b"PROXY TCP4 203.0.113.7", False),  # silent after a partial line
        (b"", False),  # silent from the start
        (b"PROXY TCP4 " + b"1" * 200 + b"\r\n", True),  # no line end within 107 bytes
    ],
)
async def test_smtpd_86_no_header_from_a_trusted_peer_is_an_error(data: bytes, eof: bool) -> None:
    with pytest.raises(ProxyError):
        await read(data, eof=eof)
