"""Golden POP3 dialogues (tests/unit/pop3d/transcripts/*.txt) replayed against the session.

Format: ``S: <line>`` server line (exact, CR LF added), ``C: <line>`` client line (sent with
CR LF), ``= close`` / ``= starttls`` what the previous reply does to the connection,
``! plaintext 0|1`` and ``! tls off|available|active`` the policy, ``#`` comments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.pop3d.session import Policy, Session, Step
from tests.unit.pop3d.fakes import FakeAuthenticator, FakeMaildrops, FakeRecorder, FakeSleep

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.txt"))


@dataclass
class Exchange:
    client: bytes
    server: list[bytes] = field(default_factory=list)
    close: bool = False
    start_tls: bool = False


@dataclass
class Transcript:
    plaintext: bool = True
    tls: str = "off"
    greeting: list[bytes] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)


def parse(path: Path) -> Transcript:
    t = Transcript()
    for raw in path.read_text().splitlines():
        if not raw or raw.startswith("#"):
            continue
        tag, text = raw[:2], raw[3:]
        if tag == "! ":
            key, _, value = raw[2:].partition(" ")
            if key == "plaintext":
                t.plaintext = value == "1"
            else:
                t.tls = value
        elif tag == "C:":
            t.exchanges.append(Exchange(text.encode() + b"\r\n"))
        elif tag == "S:":
            (t.exchanges[-1].server if t.exchanges else t.greeting).append(text.encode())
        elif raw == "= close":
            t.exchanges[-1].close = True
        elif raw == "= starttls":
            t.exchanges[-1].start_tls = True
        else:
            raise ValueError(f"{path.name}: bad transcript line {raw!r}")
    return t


def expected(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_transcript(path: Path) -> None:
    t = parse(path)
    policy = Policy(
        hostname="mx.example.test",
        plaintext=t.plaintext,
        tls_available=t.tls != "off",
        tls_active=t.tls == "active",
    )
    session = Session(
        policy, FakeAuthenticator(), FakeMaildrops(), FakeRecorder(), sleep=FakeSleep()
    )
    assert session.greeting() == expected(t.greeting)
    for number, ex in enumerate(t.exchanges, 1):
        step: Step = await session.handle(ex.client)
        where = f"{path.name} exchange {number} ({ex.client!r})"
        assert step.reply == expected(ex.server), where
        assert step.close == ex.close, where
        assert step.start_tls == ex.start_tls, where
        if step.start_tls:
            session.tls_started()
        if step.close:
            assert number == len(t.exchanges), f"{where}: lines after close"
