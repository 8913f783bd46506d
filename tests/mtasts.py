"""The MTA-STS world remote meets, for integration and end-to-end tests (RFC 8461).

- :func:`make_pki`: a test CA and one server certificate for the given names (openssl); remote
  trusts the CA through ``QMESH_TLS_CA_FILE``.
- :func:`policy`: a policy file's text; :func:`policy_server`: HTTPS on a free port answering
  ``/.well-known/mta-sts.txt`` by the request's ``Host``.
- :func:`background_loop`: an event loop in a thread of its own (:class:`Background`), for
  tests that are not asynchronous (``qmesh up`` runs in other processes) to keep such servers,
  and SMTP sinks, answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    der: bytes

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_pki(directory: Path, names: Iterable[str]) -> Pki:
    """A CA and a server certificate it signs, valid for ``names`` (the first is the CN)."""
    names = list(names)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=qmesh test CA", "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={names[0]}",
            "-keyout", "leaf.key", "-out", "leaf.csr")  # fmt: skip
    (directory / "ext").write_text(
        "subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\nextendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "leaf.pem")  # fmt: skip
    der = ssl.PEM_cert_to_DER_cert((directory / "leaf.pem").read_text())
    return Pki(directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key", der)


def policy(mode: str, *mx: str) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), "max_age: 86400"]
    return ("\r\n".join(lines) + "\r\n").encode()


@contextlib.asynccontextmanager
async def policy_server(
    pki: Pki, policies: dict[str, bytes], host: str = "127.0.0.1"
) -> AsyncIterator[int]:
    """HTTPS on a free port of ``host``: ``Host`` -> the policy at /.well-known/mta-sts.txt."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            name = next(v.strip() for k, _, v in (x.partition(":") for x in lines) if k == "Host")
            name = name.split(":")[0] if name.count(":") == 1 else name  # Host: name:port
            ok = lines[0].startswith("GET /.well-known/mta-sts.txt ") and name in policies
            body = policies.get(name, b"not found")
            status = "200 OK" if ok else "404 Not Found"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, host, 0, ssl=pki.server_context())
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


class Background:
    """A running event loop in a daemon thread: :meth:`run` waits for an awaitable there,
    :meth:`enter` enters an async context manager there until :func:`background_loop` ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._exits = contextlib.AsyncExitStack()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(30)

    def enter(self, manager: contextlib.AbstractAsyncContextManager[T]) -> T:
        return self.run(self._exits.enter_async_context(manager))


@contextlib.contextmanager
def background_loop() -> Iterator[Background]:
    background = Background()
    background._thread.start()
    try:
        yield background
    finally:
        with contextlib.suppress(Exception):
            background.run(background._exits.aclose())
        background.loop.call_soon_threadsafe(background.loop.stop)
        background._thread.join(10)
        background.loop.close()
