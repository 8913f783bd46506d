"""A DNS server on loopback for tests: UDP and TCP on one free port, answers from a dict.

It runs in threads of its own, so synchronous tests, asynchronous tests and other programs
(OpenDKIM, ``qmesh dns --check`` in a subprocess) can all ask it. dnspython reads the queries
and builds the answers; the sockets are real.

- ``records``: (lower-case name without final dot, type) -> rdata texts, e.g.
  ``{("example.test", "MX"): ["10 mx.example.test."]}``; :func:`txt` quotes and splits a
  TXT value longer than 255 characters.
- ``servfail``: names answered with SERVFAIL. ``silent``: names never answered (the client
  times out). ``secure``: names answered with the AD bit, as a validating resolver marks
  DNSSEC-validated data (RFC 4035 section 3.2.3; RFC 7672 section 2.1.1 lets a client trust it
  from a resolver it trusts).
- A name with no record of any type gets NXDOMAIN; a known name without the asked type gets an
  empty answer. UDP answers that do not fit are truncated, so the client retries over TCP.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

Records = dict[tuple[str, str], list[str]]


def txt(value: str) -> str:
    """A TXT rdata text for ``value``: quoted, in strings of at most 255 characters."""
    parts = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


@dataclass
class DnsFixture:
    records: Records = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    secure: set[str] = field(default_factory=set)
    port: int = 0
    queries: list[tuple[str, str, str]] = field(default_factory=list)  # (name, type, udp|tcp)
    _udp: socket.socket | None = None
    _tcp: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def server(self) -> str:
        """The ``QMESH_DNS_SERVERS`` value that names this server."""
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes, *, udp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        response = dns.message.make_response(query)
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype, "udp" if udp else "tcp"))
        if name in self.silent:
            return None
        response.flags |= dns.flags.RA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif (name, rdtype) in self.records:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name,
                    300,
                    "IN",
                    rdtype,
                    self.records[(name, rdtype)],
                    origin=dns.name.root,
                    relativize=False,
                )
            )
        elif name not in {n for n, _ in self.records}:
            response.set_rcode(dns.rcode.NXDOMAIN)
        if name in self.secure:
            response.flags |= dns.flags.AD
        limit = (query.payload if query.edns >= 0 else 512) if udp else 65535
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            return response.to_wire()

    def start(self) -> int:
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            self._udp, self._tcp, self.port = udp, tcp, port
            for target in (self._serve_udp, self._serve_tcp):
                thread = threading.Thread(target=target, daemon=True)
                thread.start()
                self._threads.append(thread)
            return port
        raise RuntimeError("no port free for both UDP and TCP")

    def stop(self) -> None:
        for sock in (self._udp, self._tcp):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _serve_udp(self) -> None:
        assert self._udp is not None
        while True:
            try:
                data, addr = self._udp.recvfrom(65535)
            except OSError:
                return
            reply = self.answer(data, udp=True)
            if reply is not None:
                with contextlib.suppress(OSError):
                    self._udp.sendto(reply, addr)

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        while True:
            try:
                conn, _ = self._tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._tcp_session, args=(conn,), daemon=True).start()

    def _tcp_session(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(10)
            while True:
                head = _read(conn, 2)
                if head is None:
                    return
                wire = _read(conn, int.from_bytes(head, "big"))
                if wire is None:
                    return
                reply = self.answer(wire, udp=False)
                if reply is None:
                    continue
                conn.sendall(len(reply).to_bytes(2, "big") + reply)


def _read(conn: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@contextlib.contextmanager
def serving(
    records: Records | None = None,
    *,
    servfail: set[str] | None = None,
    silent: set[str] | None = None,
    secure: set[str] | None = None,
) -> Iterator[DnsFixture]:
    fixture = DnsFixture(records or {}, servfail or set(), silent or set(), secure or set())
    fixture.start()
    try:
        yield fixture
    finally:
        fixture.stop()
