"""A list's state in KV ``qmesh_lists`` and its record in the directory (issue #15).

Keys name a list by :func:`~qmesh.lists.names.list_hash` and a subscriber by
:func:`~qmesh.lists.names.digest`, never by address (ARCH section 4):

| key | value |
|---|---|
| ``secret`` | the cookie key, 32 random bytes in hex, made once (create-only) |
| ``subs.<list>`` | ``{"sub": [...], "digest": [...]}``: ezmlm's subscriber and digest lists |
| ``seq.<list>`` | the number of the last post (ezmlm's ``num``) |
| ``digest.<list>`` | the post numbers waiting for the next digest |
| ``bounce.<list>.<subscriber>`` | bounces counted for one subscriber, and the probe sent |
| ``held.<list>.<id>`` | a post waiting for a moderator |

Every change is a compare-and-set retried a few times, as the directory's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from qmesh.contract.errors import Temporary
from qmesh.lists.address import same
from qmesh.lists.names import digest, list_hash
from qmesh.lists.records import LIST_PREFIX, ListRecord, list_key

TIMEOUT = 5.0
EDIT_TRIES = 20
WRONG_LAST_SEQUENCE = (10071, 10164)
UNAVAILABLE = "Unable to read the list's state. (#4.3.0)"


class ListStateUnavailable(Temporary):
    def __init__(self) -> None:
        super().__init__(UNAVAILABLE)


class ListConflict(Exception):
    """A compare-and-set lost too many races."""


def _conflict(err: Exception) -> bool:
    return isinstance(err, KeyWrongLastSequenceError) or (
        isinstance(err, APIError) and err.err_code in WRONG_LAST_SEQUENCE
    )


async def _get(kv: KeyValue, key: str) -> tuple[bytes, int] | None:
    try:
        entry = await asyncio.wait_for(kv.get(key), TIMEOUT)
    except KeyNotFoundError:
        return None
    except (TimeoutError, NatsError, OSError) as err:
        raise ListStateUnavailable() from err
    if entry.value is None or entry.revision is None or not entry.value:
        return None
    return entry.value, entry.revision


async def _write(kv: KeyValue, key: str, data: bytes, revision: int | None) -> bool:
    """Create (``revision`` None) or update at ``revision``; False when someone wrote first."""
    try:
        if revision is None:
            await asyncio.wait_for(kv.create(key, data), TIMEOUT)
        else:
            await asyncio.wait_for(kv.update(key, data, last=revision), TIMEOUT)
    except Exception as err:  # nats-py raises several types for a lost race
        if _conflict(err):
            return False
        if isinstance(err, (TimeoutError, NatsError, OSError)):
            raise ListStateUnavailable() from err
        raise
    return True


async def _edit_json(
    kv: KeyValue, key: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Apply ``change`` (None: delete) with compare-and-set; (before, after)."""
    for _ in range(EDIT_TRIES):
        found = await _get(kv, key)
        before: dict[str, Any] = json.loads(found[0]) if found else {}
        after = change(dict(before))
        if after == before:
            return before, after
        if after is None:
            if found is not None:
                try:
                    await asyncio.wait_for(kv.delete(key, last=found[1]), TIMEOUT)
                except Exception as err:
                    if _conflict(err):
                        continue
                    raise ListStateUnavailable() from err
            return before, None
        if await _write(kv, key, json.dumps(after).encode(), found[1] if found else None):
            return before, after
    raise ListConflict(f"{key} kept changing; try again")


# -- the cookie key ---------------------------------------------------------------------------


async def cookie_key(kv: KeyValue) -> bytes:
    """The list cookies' HMAC key, made on first use by whoever comes first."""
    for _ in range(EDIT_TRIES):
        found = await _get(kv, "secret")
        if found is not None:
            return bytes.fromhex(found[0].decode())
        await _write(kv, "secret", secrets.token_hex(32).encode(), None)
    raise ListConflict("secret")


async def existing_cookie_key(kv: KeyValue) -> bytes | None:
    """The cookie key if it was made (a reader that may not write it: admin's pages)."""
    found = await _get(kv, "secret")
    return bytes.fromhex(found[0].decode()) if found else None


# -- subscribers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribers:
    sub: tuple[str, ...] = ()
    digest: tuple[str, ...] = ()

    def has(self, address: str, which: str = "sub") -> bool:
        return any(same(a, address) for a in (self.sub if which == "sub" else self.digest))


def _subs_key(list_address: str) -> str:
    return f"subs.{list_hash(list_address)}"


async def subscribers(kv: KeyValue, list_address: str) -> Subscribers:
    found = await _get(kv, _subs_key(list_address))
    if found is None:
        return Subscribers()
    doc = json.loads(found[0])
    return Subscribers(tuple(doc.get("sub", ())), tuple(doc.get("digest", ())))


async def subscribe(
    kv: KeyValue, list_address: str, address: str, which: str = "sub", *, add: bool = True
) -> bool:
    """Add (or remove) ``address``; True if that changed anything (ezmlm-sub/ezmlm-unsub)."""

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        current: list[str] = list(doc.get(which, []))
        present = any(same(a, address) for a in current)
        if present == add:
            return doc
        members = [*current, address] if add else [a for a in current if not same(a, address)]
        return {**doc, which: members}

    before, after = await _edit_json(kv, _subs_key(list_address), change)
    return bool(before.get(which, []) != (after or {}).get(which, []))


async def subscribe_many(
    kv: KeyValue, list_address: str, addresses: list[str], which: str = "sub"
) -> int:
    """Add many addresses in one compare-and-set; how many were new."""

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        current: list[str] = list(doc.get(which, []))
        seen = {a.lower() for a in current}
        for a in addresses:
            if a.lower() not in seen:
                seen.add(a.lower())
                current.append(a)
        return {**doc, which: current}

    before, after = await _edit_json(kv, _subs_key(list_address), change)
    return len((after or {}).get(which, [])) - len(before.get(which, []))


# -- post numbers, bounces, held posts, done jobs --------------------------------------------


async def next_number(kv: KeyValue, list_address: str) -> int:
    _, after = await _edit_json(
        kv, f"seq.{list_hash(list_address)}", lambda d: {"n": int(d.get("n", 0)) + 1}
    )
    assert after is not None
    return int(after["n"])


async def digest_due(
    kv: KeyValue, list_address: str, number: int, now: float, every: int, hours: float
) -> list[int]:
    """Note post ``number`` for the digest; the numbers to send now (ezmlm-tstdig's test:
    ``every`` posts waiting, or the oldest waiting for ``hours``), which are then cleared."""
    due: list[list[int]] = [[]]

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        pending = [int(n) for n in doc.get("pending", [])]
        if number not in pending:
            pending.append(number)
        since = float(doc.get("since", now)) if doc.get("pending") else now
        if len(pending) >= every or now - since >= hours * 3600:
            due[0] = pending
            return {"pending": [], "since": now, "issue": int(doc.get("issue", 0)) + 1}
        due[0] = []
        return {**doc, "pending": pending, "since": since}

    await _edit_json(kv, f"digest.{list_hash(list_address)}", change)
    return due[0]


async def digest_overdue(kv: KeyValue, list_address: str, now: float, hours: float) -> list[int]:
    """The timer's test, with no new post: the numbers waiting if the oldest has waited
    ``hours``, which are then cleared. The compare-and-set lets one replica take them."""
    due: list[list[int]] = [[]]

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        pending = [int(n) for n in doc.get("pending", [])]
        if not pending or now - float(doc.get("since", now)) < hours * 3600:
            due[0] = []
            return doc
        due[0] = pending
        return {"pending": [], "since": now, "issue": int(doc.get("issue", 0)) + 1}

    await _edit_json(kv, f"digest.{list_hash(list_address)}", change)
    return due[0]


async def digest_issue(kv: KeyValue, list_address: str) -> int:
    """The number of digests sent so far (the last one's issue number)."""
    found = await _get(kv, f"digest.{list_hash(list_address)}")
    return int(json.loads(found[0]).get("issue", 0)) if found else 0


async def digest_requeue(kv: KeyValue, list_address: str, numbers: list[int]) -> None:
    """Put taken numbers back after a digest could not be queued (the next try sends them)."""

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        pending = [int(n) for n in doc.get("pending", [])]
        return {**doc, "pending": sorted(set(pending) | set(numbers)), "since": 0.0}

    await _edit_json(kv, f"digest.{list_hash(list_address)}", change)


def _bounce_key(list_address: str, address: str) -> str:
    return f"bounce.{list_hash(list_address)}.{digest(address.lower())}"


async def edit_bounce(
    kv: KeyValue,
    list_address: str,
    address: str,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> dict[str, Any] | None:
    _, after = await _edit_json(kv, _bounce_key(list_address, address), change)
    return after


async def hold(kv: KeyValue, list_address: str, held_id: str, doc: dict[str, Any]) -> None:
    await _write(kv, f"held.{list_hash(list_address)}.{held_id}", json.dumps(doc).encode(), None)


async def held(kv: KeyValue, list_address: str) -> dict[str, dict[str, Any]]:
    """The held posts of a list by id (what ezmlm-clean looks through)."""
    prefix = f"held.{list_hash(list_address)}."
    found: dict[str, dict[str, Any]] = {}
    for key in await _keys(kv, prefix + ">"):
        entry = await _get(kv, key)
        if entry is not None:
            with contextlib.suppress(ValueError):
                found[key.removeprefix(prefix)] = json.loads(entry[0])
    return found


async def _keys(kv: KeyValue, pattern: str) -> list[str]:
    """Keys matching a subject ``pattern`` (``held.<list>.>``), read by a watch filtered on
    the server (nats-py's ``keys(filters=...)`` reads every key and matches substrings)."""

    async def read() -> list[str]:
        watcher = await kv.watch(pattern, ignore_deletes=True, meta_only=True)
        keys: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                keys.append(entry.key)
        finally:
            await watcher.stop()
        return keys

    try:
        return await asyncio.wait_for(read(), TIMEOUT)
    except (TimeoutError, NatsError, OSError) as err:
        raise ListStateUnavailable() from err


async def take_held(kv: KeyValue, list_address: str, held_id: str) -> dict[str, Any] | None:
    """The held post's record, removed (one moderator decision wins), or None if gone."""
    before, _ = await _edit_json(kv, f"held.{list_hash(list_address)}.{held_id}", lambda d: None)
    return before or None


async def is_done(deliveries: KeyValue, job_key: str) -> bool:
    """Was this list job carried out? Kept in ``qmesh_deliveries`` under ``lists.<id>.<index>``
    (TTL 8 days, as long as local's own record that stops a second hand-over)."""
    return await _get(deliveries, f"lists.{job_key}") is not None


async def mark_done(deliveries: KeyValue, job_key: str) -> None:
    await _edit_json(deliveries, f"lists.{job_key}", lambda d: {"done": True})


async def progress(deliveries: KeyValue, job_key: str) -> int:
    """How many personal copies of a post this job queued before it was taken up again."""
    found = await _get(deliveries, f"lists.{job_key}.progress")
    return int(json.loads(found[0]).get("sent", 0)) if found else 0


async def set_progress(deliveries: KeyValue, job_key: str, sent: int) -> None:
    await _edit_json(deliveries, f"lists.{job_key}.progress", lambda d: {"sent": sent})


async def forget_list(kv: KeyValue, list_address: str) -> None:
    """Remove subscribers, numbering, bounces and held posts of a deleted list."""
    lh = list_hash(list_address)
    keys = [f"subs.{lh}", f"seq.{lh}", f"digest.{lh}"]
    for pattern in (f"bounce.{lh}.>", f"held.{lh}.>"):
        keys += await _keys(kv, pattern)
    for key in keys:
        await asyncio.wait_for(kv.purge(key), TIMEOUT)


# -- the directory record ---------------------------------------------------------------------


@dataclass
class ListDirectory:
    """List records in ``qmesh_directory`` (the CLI writes them; the service only reads)."""

    kv: KeyValue

    async def get(self, domain: str, name: str) -> ListRecord | None:
        found = await _get(self.kv, list_key(domain, name))
        if found is None:
            return None
        record = ListRecord.decode(found[0])
        if (record.domain, record.name) != (domain, name):
            return None
        return record

    async def all(self) -> list[ListRecord]:
        """Every list record (the timer's round); a record that does not decode is skipped."""
        records = []
        for key in await _keys(self.kv, LIST_PREFIX + ">"):
            found = await _get(self.kv, key)
            if found is None:
                continue
            with contextlib.suppress(ValueError):
                records.append(ListRecord.decode(found[0]))
        return records

    async def in_domain(self, domain: str) -> list[ListRecord]:
        """The list records of one stored domain name (a name with dots may look like a
        longer domain's key, so each record's own domain decides)."""
        records = []
        for key in await _keys(self.kv, f"{LIST_PREFIX}{domain}.>"):
            found = await _get(self.kv, key)
            if found is None:
                continue
            with contextlib.suppress(ValueError):
                record = ListRecord.decode(found[0])
                if record.domain == domain and record.key == key:
                    records.append(record)
        return records

    async def create(self, record: ListRecord) -> bool:
        return await _write(self.kv, record.key, record.encode(), None)

    async def update(
        self, domain: str, name: str, change: Callable[[ListRecord], ListRecord]
    ) -> ListRecord | None:
        for _ in range(EDIT_TRIES):
            found = await _get(self.kv, list_key(domain, name))
            if found is None:
                return None
            new = change(ListRecord.decode(found[0]))
            if await _write(self.kv, new.key, new.encode(), found[1]):
                return new
        raise ListConflict(f"list {name}@{domain} kept changing; try again")

    async def delete(self, domain: str, name: str) -> None:
        await asyncio.wait_for(self.kv.purge(list_key(domain, name)), TIMEOUT)
