"""qmail-tcpto: the shared memory of connection timeouts (REMOTE-22).

A connect *timeout* to an address is recorded with its time; another timeout at least two
minutes after the recorded one raises the error count. An address with two or more errors is
skipped for 64 to 97 minutes (randomised per worker) after its last timeout. A refusal or a
successful connection forgets the address. Every ``remote`` worker shares the table through
the KV bucket :data:`~qmesh.contract.subjects.KV_TCPTO`, whose keys are built from the IP
address only. The table only advises: when the bucket cannot be reached, nothing is skipped.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nats.js.errors import Error as JsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

AGAIN_AFTER = 120.0  # a second timeout counts only this long after the recorded one
SKIP_MIN = 64 * 60.0
SKIP_SPREAD = 33 * 60.0  # skip for SKIP_MIN .. SKIP_MIN + SKIP_SPREAD seconds
SKIP_ERRORS = 2
_TRIES = 3


@dataclass(frozen=True, slots=True)
class Record:
    when: float  # the last counted timeout
    errors: int


def after_timeout(record: Record | None, now: float) -> Record:
    """The record after a connect timeout at ``now``."""
    if record is None:
        return Record(now, 1)
    if now - record.when >= AGAIN_AFTER:
        return Record(now, record.errors + 1)
    return record


def skipped(record: Record | None, now: float, window: float) -> bool:
    """Whether to skip the address now: two errors and the last within ``window`` seconds."""
    return record is not None and record.errors >= SKIP_ERRORS and now - record.when < window


def skip_window(rng: random.Random) -> float:
    """This worker's skip period, 64 to 97 minutes."""
    return SKIP_MIN + rng.uniform(0, SKIP_SPREAD)


def key_for(address: str) -> str:
    """``ip4.<hex>`` or ``ip6.<hex>`` of the packed address: the address only, nothing else."""
    ip = ipaddress.ip_address(address)
    return f"ip{ip.version}.{ip.packed.hex()}"


def encode(record: Record) -> bytes:
    return json.dumps({"when": record.when, "errors": record.errors}).encode()


def decode(data: bytes | None) -> Record | None:
    try:
        raw = json.loads(data or b"")
        return Record(float(raw["when"]), int(raw["errors"]))
    except (ValueError, KeyError, TypeError):
        return None  # a damaged record counts as none


class TimeoutMemory(Protocol):
    async def skip(self, address: str) -> bool: ...

    async def timed_out(self, address: str) -> None: ...

    async def connected(self, address: str) -> None: ...


class SharedTimeouts:
    """:class:`TimeoutMemory` in a JetStream KV bucket shared by every worker."""

    def __init__(
        self,
        bucket: Callable[[], KeyValue],
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._bucket = bucket
        self._clock = clock
        self._window = skip_window(rng or random.Random())

    async def _get(self, kv: KeyValue, key: str) -> tuple[Record | None, int | None]:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # also a deleted key
            return None, None
        return decode(entry.value), entry.revision

    async def skip(self, address: str) -> bool:
        try:
            record, _ = await self._get(self._bucket(), key_for(address))
        except Exception as err:
            _unavailable("skip", err)
            return False
        return skipped(record, self._clock(), self._window)

    async def timed_out(self, address: str) -> None:
        key = key_for(address)
        try:
            kv = self._bucket()
            for _ in range(_TRIES):
                record, revision = await self._get(kv, key)
                new = after_timeout(record, self._clock())
                if new == record:
                    return
                try:
                    if revision is None:
                        await kv.create(key, encode(new))
                    else:
                        await kv.update(key, encode(new), last=revision)
                    log.info("tcpto.timeout", extra={"remote": address, "errors": new.errors})
                    return
                except (KeyWrongLastSequenceError, JsError):
                    continue  # another worker wrote it first: read again
        except Exception as err:
            _unavailable("timed_out", err)

    async def connected(self, address: str) -> None:
        key = key_for(address)
        try:
            kv = self._bucket()
            record, _ = await self._get(kv, key)
            if record is not None:
                await kv.delete(key)
                log.info("tcpto.cleared", extra={"remote": address})
        except Exception as err:
            _unavailable("connected", err)

    async def clear(self) -> None:
        """Forget every address (qmail-tcpok)."""
        kv = self._bucket()
        try:
            keys = await kv.keys()
        except NoKeysError:
            return
        for key in keys:
            await kv.purge(key)


def _unavailable(operation: str, err: Exception) -> None:
    log.warning(
        "tcpto.unavailable", extra={"operation": operation, "reason": str(err) or repr(err)}
    )
