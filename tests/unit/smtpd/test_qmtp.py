"""The QMTP server's package decisions and framing (QMTP-02..05, QMTP-10..17)."""

from __future__ import annotations

import pytest

from qmesh.contract.errors import QueueFailure
from services.smtpd.qmtp import (
    BAD_RECIPIENT,
    BAD_SENDER,
    LOOPING,
    NUL,
    TOO_BIG,
    Framing,
    Package,
    netstring,
    read_package,
    stored_form,
)
from services.smtpd.qmtp import (
    decide as decide_package,
)
from tests.unit.smtpd.test_session import CONFIG, FakeDirectory, FakeQueue


def package_bytes(message: bytes, sender: bytes, *rcpts: bytes) -> bytes:
    return netstring(message) + netstring(sender) + netstring(b"".join(netstring(r) for r in rcpts))


async def read(data: bytes, databytes: int = 0) -> Package:
    position = 0

    async def take(n: int) -> bytes:
        nonlocal position
        if position + n > len(data):
            raise Framing("end of input")
        position += n
        return data[position - n : position]

    async def skip(n: int) -> None:
        await take(n)

    return await read_package(take, skip, databytes)


async def stored(package: Package) -> bytes:
    try:
        return b"".join([chunk async for chunk in package.stored(b"")])
    finally:
        package.close()


async def test_qmtp_02_03_04_a_package_and_both_encodings() -> None:
    lf = await read(
        package_bytes(
            b"\nSubject: x\n\nhi\n", b"joe@far.test", b"a@example.test", b"b@example.test"
        )
    )
    assert (lf.sender, lf.recipients) == (b"joe@far.test", [b"a@example.test", b"b@example.test"])
    assert await stored(lf) == b"Subject: x\n\nhi\n"
    cr = await read(package_bytes(b"\rSubject: x\r\n\r\nhi\rthere\r\n", b"", b"a@example.test"))
    assert await stored(cr) == b"Subject: x\n\nhi\rthere\n"  # QMTP-11: a lone CR stays
    assert stored_form(b"\ra\r\nb\r") == b"a\nb\r"


@pytest.mark.parametrize(
    "data",
    [
        b"x:\nabc,0:,0:,",  # non-digit length
        b"0:,0:,0:,",  # zero-length message
        b"4:Xabc,0:,0:,",  # neither LF nor CR
        b"4:\nabc;0:,0:,",  # missing comma
        b"300000000:\n",  # above 200 000 000
        b"4:\nabc,0:,5:2:ab;,",  # broken recipient netstring
        b"4:\nab",  # cut short
    ],
)
async def test_qmtp_10_framing_errors(data: bytes) -> None:
    with pytest.raises(Framing):
        await read(data)


async def decide(
    package: Package, *, relayclient: str | None = None, queue: FakeQueue | None = None
) -> list[bytes]:
    verdicts, _ = await decide_package(
        package,
        config=CONFIG,
        client_ip="203.0.113.9",
        relayclient=relayclient,
        domains=lambda: frozenset(),
        rcptcheck=FakeDirectory(),
        queue=queue or FakeQueue(),
        clock=lambda: 1730790189.0,
    )
    return [v.qmtp() for v in verdicts]


async def test_qmtp_13_15_16_per_recipient_responses_and_one_enqueue() -> None:
    queue = FakeQueue()
    package = Package(
        b"\nSubject: q\n\nbody\n",
        17,
        b"joe@far.test",
        [
            b"alice@example.test",
            b"x@elsewhere.test",
            b"nobody@example.test",
            b"a\0b@example.test",
            b"alice@example.test",
            b"alice\r@example.test",  # hardening #4: no control characters
            b"ali\x1bce@example.test",
        ],
    )
    responses = await decide(package, queue=queue)
    assert responses == [
        b"Kok 1732510000 qp 4711",
        b"Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        b"Dsorry, no mailbox here by that name (#5.1.1)",
        BAD_RECIPIENT,
        b"Kok 1732510000 qp 4711",  # duplicates answered in order (QMTP-05)
        BAD_RECIPIENT,
        BAD_RECIPIENT,
    ]
    [(sender, rcpts, body, origin)] = queue.queued
    assert (sender, rcpts) == ("joe@far.test", ["alice@example.test", "alice@example.test"])
    assert origin.client_ip == "203.0.113.9"
    assert body.startswith(b"Received: from unknown (203.0.113.9)\n  by mx.example.test with QMTP;")
    assert body.endswith(b"\nSubject: q\n\nbody\n")


async def test_qmtp_12_14_17_whole_package_refusals() -> None:
    ok = [b"alice@example.test", b"alice@example.test"]
    assert await decide(Package(b"\nx\n", 2, b"a" * 1000, ok)) == [BAD_SENDER] * 2
    for sender in (b"a\rb@far.test", b"a\tb@far.test", b"a\x7fb@far.test"):  # hardening #4
        assert await decide(Package(b"\nx\n", 2, sender, ok)) == [BAD_SENDER] * 2
    assert await decide(Package(b"\nx\n", 1001, b"joe@far.test", ok)) == [TOO_BIG] * 2
    hops = b"\n" + b"Received\n" * 100 + b"\nb\n"  # 903 bytes: under databytes
    assert await decide(Package(hops, len(hops) - 1, b"joe@far.test", ok)) == [LOOPING] * 2
    queue = FakeQueue()
    for message in (b"\na\n\x00.\nb\n", b"\ra\r\n\x00.\r\n"):  # hardening #5
        package = Package(message, len(message) - 1, b"joe@far.test", ok)
        assert await decide(package, queue=queue) == [NUL] * 2
    assert queue.queued == []


async def test_qmtp_13_relay_client_and_badmailfrom() -> None:
    package = Package(b"\nx\n", 2, b"joe@far.test", [b"x@elsewhere.test"])
    assert (await decide(package, relayclient=""))[0].startswith(b"Kok ")
    bad = Package(b"\nx\n", 2, b"spammer@bad.test", [b"alice@example.test"])
    assert await decide(bad) == [b"Dsorry, your envelope sender is in my badmailfrom list (#5.7.1)"]


async def test_qmtp_15_enqueue_failure_is_each_recipients_answer() -> None:
    queue = FakeQueue(failure=QueueFailure(53))
    package = Package(b"\nx\n", 2, b"joe@far.test", [b"alice@example.test", b"x@elsewhere.test"])
    assert await decide(package, queue=queue) == [
        b"Zqq write error or disk full (#4.3.0)",
        b"Dsorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
    ]


async def test_qmtp_14_an_lf_message_over_databytes_is_skipped_not_held() -> None:
    package = await read(
        package_bytes(b"\n" + b"x" * 5000, b"joe@far.test", b"a@example.test"), databytes=1000
    )
    assert package.message == b"" and package.size == 5000
    assert await decide(package) == [TOO_BIG]
