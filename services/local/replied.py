"""Who had an account's vacation reply lately (vacation(1)'s ``.vacation.db``).

One key per account and sender in :data:`~qmesh.contract.subjects.KV_DELIVERIES`,
``vacation.<hash of account>.<hash of sender>`` (hashes, never addresses: ARCH section 4),
holding the time of the last reply. A reply is due when there is none or it is older than the
interval; the write is a create or a compare-and-set, so of two workers only one replies. The
bucket's TTL (8 days) outlasts the longest interval (7 days).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.bus.ledger import KV_ERRORS
from qmesh.contract.errors import Temporary

PREFIX = "vacation."


def _hash(address: str) -> str:
    return hashlib.sha256(address.lower().encode("utf-8", "surrogateescape")).hexdigest()[:32]


def replied_key(account: str, sender: str) -> str:
    return f"{PREFIX}{_hash(account)}.{_hash(sender)}"


class Replied:
    def __init__(self, kv: Callable[[], KeyValue], clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock

    async def due(self, account: str, sender: str, interval: float) -> bool:
        """True, and the reply recorded, when ``sender`` had none from ``account`` within
        ``interval`` seconds; ``Temporary`` when the record cannot be read or written."""
        key, now = replied_key(account, sender), self._clock()
        value = f"{now:.0f}".encode()
        try:
            kv = self._kv()
            try:
                await kv.create(key, value)
                return True
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                return False  # removed meanwhile: another worker is at it
            try:
                last = float((entry.value or b"0").decode())
            except ValueError:
                last = 0.0
            if now - last < interval or entry.revision is None:
                return False
            try:
                await kv.update(key, value, last=entry.revision)
            except KeyWrongLastSequenceError:
                return False
            return True
        except KV_ERRORS as err:
            raise Temporary(f"cannot read the vacation record: {err!r}") from err
