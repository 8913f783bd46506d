"""The bytes after ``354``: end of data, transparency, stored form, hops and size (SMTPD-51..55).

qmail's state machine, which is what makes it immune to SMTP smuggling: only CR LF ``.`` CR LF
ends the data; CR LF is stored as LF; a leading dot is removed; an LF without CR before it, or
(MODERN) a CR without LF after it, anywhere in the data, is fatal (451 and close). Pure: the
adapter feeds chunks as they arrive and learns where the data ended, so the bytes after the end
stay the next command(s). The stored form collects in :attr:`DataReader.stored` until the adapter
moves it to a :class:`~services.smtpd.spool.Spool` with :meth:`DataReader.spill`, so a message
of any size costs a bounded amount of memory (SMTPD-73).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.smtpd.spool import Spool
from services.smtpd.verdict import Verdict

BARE_LINE_END = Verdict(451, "4.5.2", "See https://cr.yp.to/docs/smtplf.html.")
TOO_BIG = Verdict.qq(552, "sorry, that message size exceeds my databytes limit (#5.3.4)")
LOOPING = Verdict.qq(554, "too many hops, this message is looping (#5.4.6)")
NUL = Verdict.qq(554, "sorry, a message may not contain NUL characters (#5.6.0)")
MAX_HOPS = 100
SPILL = 1 << 16  # stored bytes held before they move to the spool


def is_hop(line: bytes) -> bool:
    """SMTPD-53: a header line beginning ``Received`` or ``Delivered``, any case."""
    return line[:8].lower() == b"received" or line[:9].lower() == b"delivered"


def count_hops(stored: bytes) -> int:
    """SMTPD-53 / QMTP-17 over a whole message in stored form (LF line ends)."""
    counter = HopCounter()
    counter.feed(stored)
    return counter.end()


class HopCounter:
    """SMTPD-53 / QMTP-17 over a message in stored form fed in pieces of any size."""

    def __init__(self) -> None:
        self.hops = 0
        self._in_header = True
        self._line = bytearray()  # the first bytes of the current line: enough to judge it

    def feed(self, stored: bytes) -> None:
        start = 0
        while self._in_header and start < len(stored):
            end = stored.find(b"\n", start)
            piece = stored[start:] if end < 0 else stored[start:end]
            if len(self._line) < 9:
                self._line += piece[: 9 - len(self._line)]
            if end < 0:
                return
            self._end_line()
            start = end + 1

    def end(self) -> int:
        """The count, with a last line that has no LF (QMTP can carry one)."""
        if self._line:
            self._end_line()
        return self.hops

    def _end_line(self) -> None:
        if not self._line:
            self._in_header = False  # the empty line ends the header
        elif self._in_header:
            self.hops += is_hop(bytes(self._line))
        self._line.clear()


class DataReader:
    """Feed with :meth:`feed` until it returns where the data ended (or :attr:`bare` is set)."""

    def __init__(self, databytes: int) -> None:
        self.limit = databytes  # 0: no limit
        self.stored = bytearray()  # stored form not yet spilled, up to the limit
        self._spool: Spool | None = None
        self.size = 0  # stored-form size of everything received (SMTPD-55)
        self.hops = 0
        self.bare = False
        self.nul = False  # a NUL byte was seen (hardening #5)
        self.done = False
        self._line_start = True
        self._in_header = True
        self._header_line = bytearray()  # the start of the current header line, for hops
        self._cr = False  # the previous byte was a CR (its LF may be in the next chunk)
        self._dot_line = False  # the current line began with a (removed) dot

    @property
    def too_big(self) -> bool:
        return bool(self.limit) and self.size > self.limit

    def verdict(self) -> Verdict | None:
        """After the end: the refusal, by SMTPD-60 precedence (hops, then size), or ``None``.

        Then NUL: a next hop that drops NUL bytes would read CR LF NUL ``.`` CR LF as the end
        of data, so a message holding one is refused whole, as bare CR and LF are (SMTPD-51,
        hardening #5).
        """
        if self.hops >= MAX_HOPS:
            return LOOPING
        if self.too_big:
            return TOO_BIG
        if self.nul:
            return NUL
        return None

    async def spill(self, at_least: int = SPILL) -> None:
        """Move the stored form held in memory to the spool once it reaches ``at_least``."""
        if self.too_big:
            if self._spool is not None:
                self._spool.discard()  # SMTPD-55: over the limit, nothing is kept
            return
        if len(self.stored) >= at_least:
            if self._spool is None:
                self._spool = Spool()
            await self._spool.write(bytes(self.stored))
            self.stored.clear()

    def body(self, head: bytes) -> AsyncIterator[bytes]:
        """``head`` and the whole stored form, in chunks (for ``enqueue()``)."""
        if self._spool is None:
            return _once(head + bytes(self.stored))
        return self._spool.chunks(head, tail=bytes(self.stored))

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()

    def feed(self, data: bytes) -> int | None:
        """Consume ``data``; the index just past the end of data when it ended in it."""
        i, n = 0, len(data)
        whole_lines = True  # the body's whole lines may be taken at once (until one is bare)
        while i < n:
            if whole_lines and self._line_start and not self._in_header and not self._cr:
                taken = self._whole_lines(data, i)
                if taken is None:
                    whole_lines = False
                else:
                    i, ended = taken
                    if ended:
                        self.done = True
                        return i
                    continue
            if self._cr:
                self._cr = False
                if data[i] != 0x0A:
                    self.bare = True  # CR not followed by LF
                    return None
                i += 1
                ended = self._end_line()
                if ended:
                    self.done = True
                    return i
                continue
            if self._line_start and data[i] == 0x2E:  # a leading dot is removed
                self._line_start = False
                self._dot_line = True
                i += 1
                continue
            j = _line_end(data, i)
            if j > i:
                self._text(data[i:j])
            if j == n:
                return None
            if data[j] == 0x0A:
                self.bare = True  # LF without CR before it
                return None
            self._cr = True
            i = j + 1
        return None

    def _whole_lines(self, data: bytes, start: int) -> tuple[int, bool] | None:
        """The body's complete lines from ``start`` (a line start) at once: where they end and
        whether the data ended there; None when they hold a bare CR or LF, or none is complete,
        for :meth:`feed` to go on a byte at a time (throughput #10: the same outcome as the
        state machine's, line by line, which the tests compare).

        Only CR LF ``.`` CR LF (or ``.`` CR LF as the first line) ends the data; every CR must
        be followed by LF and every LF preceded by CR; a leading dot is removed; CR LF is
        stored as LF.
        """
        last = data.rfind(b"\r\n", start)
        if last < 0:
            return None
        lines = data[start : last + 2]
        if lines.startswith(b".\r\n"):
            return start + 3, True
        end = lines.find(b"\r\n.\r\n")
        if end >= 0:
            lines = lines[: end + 2]
        pairs = lines.count(b"\r\n")
        if lines.count(b"\r") != pairs or lines.count(b"\n") != pairs:
            return None
        if lines.startswith(b"."):
            lines = lines[1:]
        self.nul = self.nul or b"\0" in lines
        self._store(lines.replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n"))
        if end >= 0:
            return start + end + 5, True
        return last + 2, False

    def _text(self, chunk: bytes) -> None:
        self._line_start = False
        self._dot_line = False
        self.nul = self.nul or b"\0" in chunk
        self._store(chunk)
        if self._in_header and len(self._header_line) < 9:
            self._header_line += chunk[: 9 - len(self._header_line)]

    def _end_line(self) -> bool:
        """A CR LF: the end of data when the line was a lone dot."""
        if self._dot_line:
            return True
        if self._in_header:
            start = bytes(self._header_line)
            if not start:
                self._in_header = False  # the empty line ends the header
            elif is_hop(start):
                self.hops += 1
            self._header_line.clear()
        self._store(b"\n")
        self._line_start = True
        return False

    def _store(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if not self.too_big:
            self.stored += chunk
        elif self.stored:
            self.stored.clear()  # over the limit: stop holding the message (SMTPD-55)


def _line_end(data: bytes, start: int) -> int:
    """The index of the first CR or LF at or after ``start``, else ``len(data)``."""
    cr = data.find(b"\r", start)
    lf = data.find(b"\n", start, cr if cr >= 0 else len(data))
    if lf >= 0:
        return lf
    return cr if cr >= 0 else len(data)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
