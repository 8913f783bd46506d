"""The QMTP client, for relays named in ``qmtproutes`` (QMTP-01..05, QMTP-30..33).

One package per connection: netstring(LF + stored form) + netstring(sender) +
netstring(netstring(recipient)). The stored form goes out as it is, LF-encoded, with nothing
appended (QMTP-31); the double-bounce sender is already the empty string (QMTP-33). The
server answers one netstring per recipient: ``K``, ``Z`` or ``D`` and a text (QMTP-05). A
connection lost before that answer is a temporary failure, marked as a possible duplicate
once the whole package was sent (QMTP-32).
"""

from __future__ import annotations

from services.remote import report
from services.remote.client import Attempt, BodyUnreadable, ConnectionDied, Letter, Stream

MAX_RESPONSE = 10_000
_MAX_DIGITS = 10


def netstring(data: bytes) -> bytes:
    """``<len>:<data>,`` (QMTP-02)."""
    return b"%d:%s," % (len(data), data)


def package_head(size: int) -> bytes:
    """The start of the message netstring: its length, the colon and the LF encoding byte."""
    return b"%d:\n" % (size + 1)


def envelope_tail(sender: str, recipient: str) -> bytes:
    """The end of the message netstring, then the sender and the recipient list."""
    return (
        b","
        + netstring(sender.encode("utf-8", "surrogateescape"))
        + netstring(netstring(recipient.encode("utf-8", "surrogateescape")))
    )


class Malformed(Exception):
    """A response that is not a netstring beginning with K, Z or D."""


def parse_length(digits: bytes) -> int:
    if not digits or not digits.isdigit() or len(digits) > _MAX_DIGITS:
        raise Malformed("bad netstring length")
    return int(digits)


async def read_response(stream: Stream) -> bytes:
    """One response netstring's content."""
    digits = b""
    while True:
        byte = await stream.exactly(1)
        if byte == b":":
            break
        digits += byte
        if len(digits) > _MAX_DIGITS:
            raise Malformed("netstring length too long")
    length = parse_length(digits)
    if length == 0 or length > MAX_RESPONSE:
        raise Malformed("response length out of range")
    content = await stream.exactly(length)
    if await stream.exactly(1) != b",":
        raise Malformed("netstring without its comma")
    if content[:1] not in (b"K", b"Z", b"D"):
        raise Malformed("response is not K, Z or D")
    return content


async def transaction(stream: Stream, ip: str, *, letter: Letter, size: int) -> Attempt:
    """Send one package for the letter's (one) recipient and read its response (QMTP-32)."""
    sent = False
    try:
        await stream.send(package_head(size))
        seen = 0
        try:
            async for chunk in letter.chunks():
                seen += len(chunk)
                await stream.send(chunk)
        except ConnectionDied:
            raise
        except Exception as err:
            raise BodyUnreadable(str(err)) from err
        if seen != size:
            raise BodyUnreadable("body changed size")
        await stream.send(envelope_tail(letter.sender, letter.recipients[0]))
        sent = True
        response = await read_response(stream)
    except ConnectionDied:
        died = report.connection_died(ip, possible_duplicate=sent)
        return Attempt("deferred", died, next_address=not sent)
    except BodyUnreadable:
        return Attempt("deferred", report.MESSAGE_UNREADABLE)
    except Malformed:
        return Attempt("deferred", report.qmtp_malformed(ip))
    finally:
        await stream.close()
    letter_code, text = response[:1], [response[1:]]
    if letter_code == b"K":
        return Attempt("delivered", report.accepted(ip, text))
    if letter_code == b"D":
        return Attempt("failed", report.message_failed(ip, text))
    return Attempt("deferred", report.message_failed(ip, text))
