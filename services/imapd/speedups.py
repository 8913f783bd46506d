"""pymap 0.36.7 formats every FETCH item through ``isinstance`` checks against runtime
Protocols (``SupportsBytes``, ``SupportsIndex``), which on Python 3.11 cost more than the rest
of a ``FETCH 1:* (FLAGS)`` together. The same checks, by attribute lookup on the type."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pymap.bytes as pymap_bytes


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
