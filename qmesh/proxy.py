"""PROXY protocol v1 and v2: the client address a load balancer passes in front of a stream.

A listener behind a balancer (control ``proxyclients``, SMTPD-86, POP3 likewise) takes the
client address from the header instead of the socket, but only when the socket's peer is one of
the trusted balancer networks: any peer trusted here can claim any client address. A trusted
peer must send a header before anything else; one that does not is cut off, since the bytes it
sent instead cannot be told apart from a forged header. An untrusted peer is a direct client and
its first bytes are protocol, never a header.

The parsers are pure (bytes in, address out); :func:`read_header` is the one place that reads a
connection, byte-exact, so smtpd and pop3d handle the header the same way.
(Reference: haproxy's ``doc/proxy-protocol.txt``.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from qmesh.address import client_address
from qmesh.control.parse import Network

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version/command, family/transport, length
V2_MAX_BODY = 512  # addresses plus TLVs; a balancer sends far less
HEADER_TIMEOUT = 10.0


class ProxyError(ValueError):
    """The header is missing, malformed or not a TCP header: the connection is closed."""


@dataclass(frozen=True, slots=True)
class Peer:
    """The client as the balancer saw it."""

    host: str
    port: int


def trusted(peer_host: str, networks: Iterable[Network]) -> bool:
    """Whether the socket's peer is a balancer whose header is believed."""
    address = client_address(peer_host)
    if address is None:
        return False
    return any(address.version == n.version and address in n for n in networks)


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text.startswith(b"0")):
        raise ProxyError(f"bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyError(f"bad port {text!r}")
    return port


def parse_v1(line: bytes) -> Peer | None:
    """``PROXY TCP4|TCP6 src dst sport dport`` CRLF; ``None`` for ``PROXY UNKNOWN``."""
    if not line.endswith(b"\r\n") or len(line) > V1_MAX or not line.startswith(V1_PREFIX):
        raise ProxyError("not a PROXY v1 line")
    fields = line[:-2].split(b" ")
    if fields[1:2] == [b"UNKNOWN"]:
        return None  # the balancer's own connection, e.g. a health check
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyError("malformed PROXY v1 line")
    version = 4 if fields[1] == b"TCP4" else 6
    try:
        source = ipaddress.ip_address(fields[2].decode("ascii"))
        ipaddress.ip_address(fields[3].decode("ascii"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ProxyError("bad address in PROXY v1 line") from err
    if source.version != version:
        raise ProxyError("PROXY v1 address does not match its family")
    _port(fields[5])
    return Peer(str(source), _port(fields[4]))


def v2_body_length(fixed: bytes) -> int:
    """The length of what follows the 16 fixed bytes of a v2 header."""
    if len(fixed) != V2_FIXED or not fixed.startswith(V2_SIGNATURE):
        raise ProxyError("not a PROXY v2 header")
    if fixed[12] >> 4 != 2 or fixed[12] & 0x0F not in (0, 1):
        raise ProxyError("unsupported PROXY v2 version or command")
    length = int.from_bytes(fixed[14:16], "big")
    if length > V2_MAX_BODY:
        raise ProxyError("PROXY v2 header too long")
    return length


def parse_v2(fixed: bytes, body: bytes) -> Peer | None:
    """The source of a v2 PROXY/TCP header; ``None`` for LOCAL or an unspecified family."""
    if len(body) != v2_body_length(fixed):
        raise ProxyError("truncated PROXY v2 header")
    if fixed[12] & 0x0F == 0:
        return None  # LOCAL: the balancer speaking for itself
    family, transport = fixed[13] >> 4, fixed[13] & 0x0F
    if family == 0:
        return None  # UNSPEC
    if transport != 1:
        raise ProxyError("PROXY v2 header is not for a stream (TCP)")
    if family == 1 and len(body) >= 12:
        host = str(ipaddress.IPv4Address(body[0:4]))
        return Peer(host, int.from_bytes(body[8:10], "big"))
    if family == 2 and len(body) >= 36:
        host = str(ipaddress.IPv6Address(body[0:16]))
        return Peer(host, int.from_bytes(body[32:34], "big"))
    raise ProxyError("unsupported or short PROXY v2 address block")


Recv = Callable[[int], Awaitable[bytes]]
"""Exactly ``n`` bytes of the stream, or :class:`asyncio.IncompleteReadError` at its end."""


async def read_header(recv: Recv, within: float = HEADER_TIMEOUT) -> Peer | None:
    """Read one v1 or v2 header from the start of a stream (the peer is already trusted).

    ``recv`` reads exact byte counts, so not one byte after the header is consumed: what
    follows (a TLS ClientHello on an implicit-TLS port) is left for the protocol. Raises
    :class:`ProxyError` for anything else, including silence for ``within`` seconds.
    """
    try:
        async with asyncio.timeout(within):
            first = await recv(len(V1_PREFIX))
            if first == V1_PREFIX:
                line = first
                while not line.endswith(b"\n"):
                    if len(line) >= V1_MAX:
                        raise ProxyError("PROXY v1 line too long")
                    line += await recv(1)
                return parse_v1(line)
            if V2_SIGNATURE.startswith(first):
                fixed = first + await recv(V2_FIXED - len(first))
                return parse_v2(fixed, await recv(v2_body_length(fixed)))
    except (TimeoutError, asyncio.IncompleteReadError) as err:
        raise ProxyError(f"no PROXY header ({type(err).__name__})") from err
    raise ProxyError("the connection did not start with a PROXY header")


def socket_recv(sock: socket.socket) -> Recv:
    """A :data:`Recv` on a connected non-blocking socket that asyncio does not read yet."""
    loop = asyncio.get_running_loop()

    async def recv(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            if not chunk:
                raise asyncio.IncompleteReadError(data, n)
            data += chunk
        return data

    return recv
