"""SMTP transparency: the stored form as DATA content (REMOTE-35, REMOTE-36).

Pure. The stored form has lines ending in LF. On the wire every line ends in CR LF and a line
that begins with ``.`` gets another ``.`` in front. A stored CR LF is one line break, and a
stored CR that no LF follows is a line break too ([MODERN] REMOTE-36: never a bare CR or LF on
the wire); the line after it is dot-stuffed like every other line, so a stored
``x<CR>.<LF>`` cannot end the DATA early at the next hop. A stored form without a final LF
gets CR LF appended ([MODERN] REMOTE-35). The data ends with ``.`` CR LF.

:class:`DataEncoder` works on chunks, so a body is never held whole; a CR at the end of a
chunk waits for the next one to see whether an LF follows.
"""

from __future__ import annotations

from collections.abc import Iterable

END_OF_DATA = b".\r\n"


class DataEncoder:
    """Feed stored-form chunks, get wire chunks; :meth:`finish` adds the end of the data."""

    def __init__(self) -> None:
        self._at_line_start = True
        self._held_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
        if not chunk:
            return b""
        lines = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        stuffed = lines.replace(b"\n.", b"\n..")
        if self._at_line_start and stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        self._at_line_start = stuffed.endswith(b"\n")
        return stuffed.replace(b"\n", b"\r\n")

    def finish(self) -> bytes:
        """The rest: a held CR as a line break, CR LF after a partial last line, ``.`` CR LF."""
        tail = b""
        if self._held_cr:
            self._held_cr = False
            tail = b"\r\n"
            self._at_line_start = True
        if not self._at_line_start:
            tail += b"\r\n"
            self._at_line_start = True
        return tail + END_OF_DATA


def encode_data(stored: bytes | Iterable[bytes]) -> bytes:
    """The whole DATA content for a stored form given at once or in chunks."""
    encoder = DataEncoder()
    chunks = [stored] if isinstance(stored, bytes) else stored
    return b"".join(encoder.feed(c) for c in chunks) + encoder.finish()
