# ruff: noqa: F811 - the fixtures imported from test_imapd are the parameters
"""A large message fetched whole or in part is read from the store as it is sent (#13).

A 30 MB message lies in a real store (the directory store and SeaweedFS S3); a raw client
fetches it whole and in parts, reading each literal in chunks, while ``tracemalloc`` watches
the process the service runs in: no FETCH may hold anything near the message in memory.
RFC 3501 6.4.5 / RFC 9051 6.4.5: a partial past the end is an empty string, a zero count BAD.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import tracemalloc

import pytest

from services.imapd.backend import with_crlf
from tests.integration.test_imapd import (  # noqa: F401 - fixtures
    PASSWORD,
    Stack,
    certificate,
    settings,
    stack,
)

pytestmark = pytest.mark.integration

MB = 1 << 20
LINE = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"


def big_message(size: int) -> bytes:
    head = (
        b"From: Bob <bob@example.test>\nTo: alice@example.test\nSubject: large\n"
        b"Date: Mon, 1 Dec 2025 10:00:00 +0000\nMessage-ID: <big@example.test>\n\n"
    )
    return head + LINE * ((size - len(head)) // len(LINE))


class Client:
    """A raw IMAP client that reads literals in chunks and keeps only their digest."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.n = reader, writer, 0

    @classmethod
    async def login(cls, port: int, user: str) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        client = cls(reader, writer)
        await reader.readline()
        await client.command(f"LOGIN {user} {PASSWORD!r}".replace("'", '"'))
        await client.command("SELECT INBOX")
        return client

    async def command(self, text: str) -> tuple[bytes, list[tuple[bytes, int, bytes]]]:
        """The tagged reply and, for each literal, (the line before it, its length, up to
        4 KiB of its start and its SHA-256 hex)."""
        self.n += 1
        tag = b"t%d" % self.n
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        await self.writer.drain()
        literals: list[tuple[bytes, int, bytes]] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 120)
            assert line, "connection closed"
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                left = int(m.group(1))
                digest, start = hashlib.sha256(), b""
                while left:
                    chunk = await self.reader.read(min(left, 1 << 16))
                    assert chunk
                    digest.update(chunk)
                    if len(start) < 4096:
                        start += chunk[: 4096 - len(start)]
                    left -= len(chunk)
                literals.append((line, int(m.group(1)), start + b"|" + digest.hexdigest().encode()))
                continue
            if line.startswith(tag + b" "):
                return line, literals

    async def close(self) -> None:
        self.writer.close()


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


async def test_a_partial_fetch_of_a_30_mb_message_reads_only_its_range(stack: Stack) -> None:
    await stack.add_account("alice")
    content = big_message(30 * MB)
    await stack.deliver("alice", content, 1)
    sent = with_crlf(content)
    first, middle = sent[:1024], sent[20 * MB : 20 * MB + 100_000]
    whole, size = sha(sent), len(sent)
    tail = sent[-10:]
    del content, sent
    client = await Client.login(stack.port(), "alice")
    try:
        tracemalloc.start()
        try:
            reply, _ = await client.command("FETCH 1 (RFC822.SIZE)")
            assert b" OK " in reply  # from the index: no body read (peak below)
            _, peak_size = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()

            reply, lits = await client.command("FETCH 1 (RFC822.SIZE BODY.PEEK[]<0.1024>)")
            assert reply.endswith(b"OK FETCH completed.\r\n") or b" OK " in reply
            assert lits[0][0].startswith(b"* 1 FETCH (RFC822.SIZE %d BODY[]<0> {1024}" % size)
            assert lits[0][2] == first[:4096] + b"|" + sha(first)
            _, peak_partial = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()

            reply, lits = await client.command(f"FETCH 1 (BODY.PEEK[]<{20 * MB}.100000>)")
            assert b" OK " in reply
            assert lits[0][1] == 100_000 and lits[0][2].endswith(b"|" + sha(middle))
            reply, lits = await client.command(f"FETCH 1 (BINARY.PEEK[]<{size - 10}.1000>)")
            assert b" OK " in reply  # a count past the end: what there is (RFC 3501 6.4.5)
            assert lits[0][2] == tail + b"|" + sha(tail)
            _, peak_ranges = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()

            # the whole message, and a count as large as a number may be, in chunks
            reply, lits = await client.command("FETCH 1 (BODY.PEEK[])")
            assert b" OK " in reply and lits[0][1] == size and lits[0][2].endswith(b"|" + whole)
            reply, lits = await client.command("FETCH 1 (BODY.PEEK[]<0.4294967295>)")
            assert b" OK " in reply and lits[0][1] == size and lits[0][2].endswith(b"|" + whole)
            _, peak_whole = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()

            # an origin past the end: an empty string; a zero count: BAD
            reply, lits = await client.command("FETCH 1 (BODY.PEEK[]<4294967295.1>)")
            assert b" OK " in reply and [(n, s) for _, n, s in lits] == [(0, b"|" + sha(b""))]
            reply, lits = await client.command(f"FETCH 1 (BODY.PEEK[]<{size}.10>)")
            assert b" OK " in reply and lits[0][1] == 0
            reply, _ = await client.command("FETCH 1 (BODY.PEEK[]<0.0>)")
            assert reply.startswith(b"t%d BAD" % client.n)
            for beyond in ("<0.99999999999999999999>", "<99999999999999999999.1>"):
                reply, _ = await client.command(f"FETCH 1 (BODY.PEEK[]{beyond})")
                assert reply.startswith(b"t%d BAD" % client.n)  # beyond RFC 9051's number64
            _, peak_edges = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak_size < MB, peak_size
        assert peak_partial < 2 * MB, peak_partial
        assert peak_ranges < 3 * MB, peak_ranges
        assert peak_whole < 3 * MB, peak_whole
        assert peak_edges < 2 * MB, peak_edges
        reply, lits = await client.command("FETCH 1 (FLAGS)")
        assert b" OK " in reply  # PEEK set no \\Seen, and the session is in step
    finally:
        await client.close()
