"""pymap 0.36.7 formats every FETCH item through ``isinstance`` checks against runtime
Protocols (``SupportsBytes``, ``SupportsIndex``), which on Python 3.11 cost more than the rest
of a ``FETCH 1:* (FLAGS)`` together. The same checks, by attribute lookup on the type; and
the untagged FETCH of a ``FETCH 1:* (FLAGS)`` written without pymap's per-item machinery."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pymap.bytes as pymap_bytes
from pymap.fetch import DynamicFetchValue, _FlagsFetchValue, _UidFetchValue
from pymap.parsing.response.specials import FetchResponse

from services.imapd import quickfetch


def has_bytes(value: object) -> bool:
    return isinstance(value, bytes) or hasattr(type(value), "__bytes__")


def _mod(self: pymap_bytes.BytesFormat, other: Any) -> bytes:
    if hasattr(type(other), "__index__") or has_bytes(other):
        return self.format([other])
    if isinstance(other, Iterable):
        return self.format(other)
    raise NotImplementedError()


def install() -> None:
    pymap_bytes.has_bytes = has_bytes  # type: ignore[assignment]
    pymap_bytes.BytesFormat.__mod__ = _mod  # type: ignore[method-assign]
    quickfetch.install()


def fetch_line(resp: object) -> bytes | None:
    """The bytes pymap would write for an untagged FETCH of items that need no message
    content (UID, FLAGS, INTERNALDATE...), made directly: the flag lists a folder has are
    formatted once, not once per message. ``None`` for any other response."""
    if type(resp) is not FetchResponse:
        return None
    items: list[bytes] = []
    for value in resp.data.values():
        kind = type(value)
        if kind is _UidFetchValue and isinstance(value, _UidFetchValue):
            items.append(b"UID %d" % value.message.uid)
        elif kind is _FlagsFetchValue and isinstance(value, _FlagsFetchValue):
            flags = value.message.get_flags(value.selected.session_flags)
            items.append(b"FLAGS " + quickfetch.flag_list(flags))
        elif isinstance(value, DynamicFetchValue):
            items.append(bytes(value))
        else:
            return None  # content, literals, other extensions' items: pymap writes them
    return b"* %d FETCH (%b)\r\n" % (resp.seq, b" ".join(items))
