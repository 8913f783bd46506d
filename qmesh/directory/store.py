"""The directory in the KV bucket ``qmesh_directory``: reads and compare-and-set writes.

Keys follow spec section 1.4 (``domain.<domain>``, ``account.<domain>.<account>``). Every
write is conditioned on the revision that was read, and a record is created only if absent
(LOCAL-55); a writer that loses a race re-reads and re-applies its change a few times, then
gives up with :class:`EditConflict`. A bucket that cannot be read raises
:class:`DirectoryUnavailable`, a :class:`~qmesh.contract.errors.Temporary` with the text of
LOCAL-07; "unavailable" is never answered as "absent".
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from qmesh.bus.provision import ensure_kv
from qmesh.contract import subjects
from qmesh.contract.errors import Temporary
from qmesh.directory.errors import EditConflict, RecordExists, RecordMissing
from qmesh.directory.records import (
    DOMAIN_PREFIX,
    AccountRecord,
    DomainRecord,
    Record,
    account_key,
    account_prefix,
    domain_key,
)

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)

TIMEOUT = 5.0
EDIT_TRIES = 10
RETRY_JITTER = 0.02  # seconds, times the attempt number: losers of a race spread out
WRONG_LAST_SEQUENCE = (10071, 10164)  # JetStream's "wrong last sequence" error codes


class DirectoryUnavailable(Temporary):
    def __init__(self, reason: str) -> None:
        super().__init__("Unable to read the directory. (#4.3.0)")
        self.reason = reason


class InvalidRecord(Temporary):
    """A stored record that fails validation: unusable, but never taken as absent."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Unable to read the directory: record {key} is invalid. (#4.3.0)")
        self.key = key


def _unavailable(err: BaseException) -> DirectoryUnavailable:
    reason = str(err) or type(err).__name__
    log.warning("directory.unavailable", extra={"reason": reason})
    return DirectoryUnavailable(reason)


def _decode(cls: type[R], key: str, data: bytes) -> R:
    try:
        return cls.decode(data)
    except ValidationError as err:
        log.error("directory.invalid_record", extra={"key": key, "reason": str(err)[:500]})
        raise InvalidRecord(key) from err


def _conflict(err: Exception) -> bool:
    return isinstance(err, KeyWrongLastSequenceError) or (
        isinstance(err, APIError) and err.err_code in WRONG_LAST_SEQUENCE
    )


class Directory:
    """Domains and accounts over a nats-py :class:`KeyValue` handle of ``qmesh_directory``."""

    def __init__(self, kv: KeyValue, *, timeout: float = TIMEOUT, tries: int = EDIT_TRIES):
        self._kv = kv
        self._timeout = timeout
        self._tries = tries

    @classmethod
    async def open(
        cls, js: JetStreamContext, replicas: int = 1, *, op_timeout: float = TIMEOUT
    ) -> Directory:
        """Open (creating if needed) the bucket; :class:`DirectoryUnavailable` on failure.

        ``op_timeout`` bounds each later read and write, in seconds.
        """
        bucket = ensure_kv(js, subjects.KV_DIRECTORY, replicas)
        try:
            kv = await asyncio.wait_for(bucket, op_timeout * 2)
        except (TimeoutError, NatsError, OSError) as err:
            raise _unavailable(err) from err
        return cls(kv, timeout=op_timeout)

    # -- reading ---------------------------------------------------------------------------

    async def _get(self, key: str) -> tuple[bytes, int] | None:
        try:
            entry = await asyncio.wait_for(self._kv.get(key), self._timeout)
        except KeyNotFoundError:
            return None
        except (TimeoutError, NatsError, OSError) as err:
            raise _unavailable(err) from err
        if entry.value is None or entry.revision is None:
            return None
        return entry.value, entry.revision

    async def _read_domain(self, name: str) -> tuple[DomainRecord, int] | None:
        key = domain_key(name)
        found = await self._get(key)
        if found is None:
            return None
        record = _decode(DomainRecord, key, found[0])
        if record.name != name:
            log.error("directory.invalid_record", extra={"key": key, "reason": "name mismatch"})
            raise InvalidRecord(key)
        return record, found[1]

    async def _read_account(self, domain: str, name: str) -> tuple[AccountRecord, int] | None:
        key = account_key(domain, name)
        found = await self._get(key)
        if found is None:
            return None
        record = _decode(AccountRecord, key, found[0])
        if (record.domain, record.name) != (domain, name):
            return None  # the key belongs to another account (see records.account_prefix)
        return record, found[1]

    async def get_domain(self, name: str) -> DomainRecord | None:
        found = await self._read_domain(name)
        return found[0] if found else None

    async def get_account(self, domain: str, name: str) -> AccountRecord | None:
        found = await self._read_account(domain, name)
        return found[0] if found else None

    async def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """The current value of every key under ``prefix`` (deleted keys left out)."""
        items: list[tuple[str, bytes]] = []
        try:
            watcher = await asyncio.wait_for(
                self._kv.watch(prefix + ">", ignore_deletes=True), self._timeout
            )
            try:
                while True:
                    entry = await watcher.updates(timeout=self._timeout)
                    if entry is None:
                        break
                    if entry.value is not None:
                        items.append((entry.key, entry.value))
            finally:
                await watcher.stop()
        except (TimeoutError, NatsError, OSError) as err:
            raise _unavailable(err) from err
        return sorted(items)

    async def list_domains(self) -> list[DomainRecord]:
        return [_decode(DomainRecord, k, v) for k, v in await self._scan(DOMAIN_PREFIX)]

    async def list_accounts(self, domain: str) -> list[AccountRecord]:
        records = [
            _decode(AccountRecord, k, v) for k, v in await self._scan(account_prefix(domain))
        ]
        return [r for r in records if r.domain == domain]

    # -- writing ---------------------------------------------------------------------------

    async def _create(self, record: Record, what: str) -> None:
        try:
            await asyncio.wait_for(self._kv.create(record.key, record.encode()), self._timeout)
        except (TimeoutError, NatsError, OSError) as err:
            if _conflict(err):
                raise RecordExists(f"{what} already exists") from err
            raise _unavailable(err) from err

    async def _write(self, key: str, data: bytes | None, revision: int) -> bool:
        """Put (or delete, ``data`` None) if ``revision`` is still the latest; False if not.

        On False the caller re-reads and tries again, after a short random pause.
        """
        try:
            if data is None:
                await asyncio.wait_for(self._kv.delete(key, last=revision), self._timeout)
            else:
                await asyncio.wait_for(self._kv.update(key, data, last=revision), self._timeout)
        except (TimeoutError, NatsError, OSError) as err:
            if _conflict(err):
                log.info("directory.edit_conflict", extra={"key": key})
                await asyncio.sleep(random.uniform(0, RETRY_JITTER))
                return False
            raise _unavailable(err) from err
        return True

    async def create_domain(self, record: DomainRecord) -> None:
        await self._create(record, f"domain {record.name}")
        log.info("directory.domain_created", extra={"domain": record.name})

    async def create_account(self, record: AccountRecord) -> None:
        try:
            await self._create(record, f"account {record.address}")
        except RecordExists:
            other = await self._get(record.key)
            if other is not None and await self.get_account(record.domain, record.name) is None:
                raise RecordExists(
                    f"account {record.address} cannot be created: its directory key "
                    f"{record.key} is used by another account"
                ) from None
            raise
        log.info(
            "directory.account_created", extra={"domain": record.domain, "account": record.name}
        )

    async def update_domain(
        self, name: str, change: Callable[[DomainRecord], DomainRecord]
    ) -> DomainRecord:
        """Apply ``change`` to the current record and write it if nobody wrote in between."""
        for _ in range(self._tries):
            found = await self._read_domain(name)
            if found is None:
                raise RecordMissing(f"no such domain: {name}")
            record, revision = found
            new = change(record)
            if new == record:
                return record
            if new.key != record.key:
                raise ValueError("a change may not rename a record")
            if await self._write(record.key, new.encode(), revision):
                return new
        raise EditConflict(f"domain {name} kept changing; try again")

    async def update_account(
        self, domain: str, name: str, change: Callable[[AccountRecord], AccountRecord]
    ) -> AccountRecord:
        for _ in range(self._tries):
            found = await self._read_account(domain, name)
            if found is None:
                raise RecordMissing(f"no such account: {name}@{domain}")
            record, revision = found
            new = change(record)
            if new == record:
                return record
            if new.key != record.key:
                raise ValueError("a change may not rename a record")
            if await self._write(record.key, new.encode(), revision):
                return new
        raise EditConflict(f"account {name}@{domain} kept changing; try again")

    async def delete_domain(
        self, name: str, check: Callable[[DomainRecord], None] | None = None
    ) -> None:
        """Delete the domain record; ``check`` may refuse by raising (it sees the record)."""
        for _ in range(self._tries):
            found = await self._read_domain(name)
            if found is None:
                raise RecordMissing(f"no such domain: {name}")
            if check is not None:
                check(found[0])
            if await self._write(found[0].key, None, found[1]):
                log.info("directory.domain_deleted", extra={"domain": name})
                return
        raise EditConflict(f"domain {name} kept changing; try again")

    async def delete_account(
        self, domain: str, name: str, check: Callable[[AccountRecord], None] | None = None
    ) -> None:
        for _ in range(self._tries):
            found = await self._read_account(domain, name)
            if found is None:
                raise RecordMissing(f"no such account: {name}@{domain}")
            if check is not None:
                check(found[0])
            if await self._write(found[0].key, None, found[1]):
                log.info("directory.account_deleted", extra={"domain": domain, "account": name})
                return
        raise EditConflict(f"account {name}@{domain} kept changing; try again")
