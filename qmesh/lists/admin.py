"""List administration: the operations behind ``qmesh list`` and admin's list pages (issue #15).

ezmlm-make, ezmlm-list, ezmlm-sub and ezmlm-unsub, once: the command and the page call these,
so they cannot disagree. Names and addresses are checked before anything is written; refusals
are :class:`~qmesh.directory.errors.DirectoryError` subclasses naming the bad value, a store
that cannot be reached is ``Temporary``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

from nats.js.kv import KeyValue
from pydantic import ValidationError

from qmesh.directory.errors import InvalidName, RecordExists, RecordMissing, Refused
from qmesh.directory.names import domain_name, is_account_name
from qmesh.directory.records import DomainRecord
from qmesh.directory.store import Directory
from qmesh.lists import state
from qmesh.lists.address import address_problem, canonical
from qmesh.lists.records import LIST_RULE, ListRecord

DEFAULT_RULE = "-default"
DigestFormat = Literal["mime", "rfc1153"]


@dataclass(frozen=True)
class ListStores:
    """The directory (domains, rules, list records) and the lists' state bucket."""

    directory: Directory
    lists: state.ListDirectory
    kv: KeyValue  # qmesh_lists


@dataclass(frozen=True)
class ListOptions:
    """ezmlm-make's switches, as ``qmesh list create`` takes them."""

    moderated: bool = False
    subscribers_only: bool = False
    digest: bool = False
    archive: bool = False
    verp: bool = False
    personal: bool = False
    prefix: str = ""
    owner: str | None = None
    moderators: tuple[str, ...] = ()
    bounce_period: int = 10 * 86400
    digest_every: int = 30
    digest_hours: float = 24.0
    digest_format: DigestFormat = "mime"
    moderation_hours: float = 120.0


def parse_list(text: str) -> tuple[str, str]:
    """``LIST@DOMAIN`` -> (name, stored domain); :class:`InvalidName` otherwise."""
    name, at, domain = text.rpartition("@")
    if not at or not is_account_name(name) or name != name.lower() or "-" in name[-1:]:
        raise InvalidName(f"invalid list address {text[:300]!r}: want name@domain, name lower-case")
    return name, domain_name(domain)


def check_addresses(addresses: list[str]) -> list[str]:
    for a in addresses:
        problem = address_problem(a)
        if problem is not None:
            raise InvalidName(f"{a[:80]!r}: {problem}")
    return [canonical(a) for a in addresses]


def list_record(address: str, options: ListOptions) -> ListRecord:
    """The record ``qmesh list create`` would write, checked; nothing is written."""
    name, domain = parse_list(address)
    owner = check_addresses([options.owner])[0] if options.owner else None
    moderators = check_addresses(list(options.moderators))
    if options.moderated and not (moderators or owner):
        raise Refused("a moderated list needs --moderator (or --owner) to accept posts")
    try:
        return ListRecord(
            domain=domain,
            name=name,
            moderated=options.moderated,
            subscribers_only=options.subscribers_only,
            digest=options.digest,
            archive=options.archive,
            verp=options.verp,
            personal=options.personal,
            prefix=options.prefix,
            owner=owner,
            moderators=moderators,
            bounce_period=options.bounce_period,
            digest_every=options.digest_every,
            digest_hours=options.digest_hours,
            digest_format=options.digest_format,
            moderation_hours=options.moderation_hours,
        )
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).replace("_", " ")
        raise Refused(f"invalid list setting {where}: {first['msg']}") from None


async def create_list(stores: ListStores, record: ListRecord) -> ListRecord:
    """Write the list's record and its two domain rules ``LIST`` and ``LIST-default``."""
    domain, name = record.domain, record.name
    found = await stores.directory.get_domain(domain)
    if found is None:
        raise RecordMissing(f"no such domain: {domain} (qmesh domain add {domain})")
    if await stores.directory.get_account(domain, name) is not None:
        raise RecordExists(f"{name}@{domain} is an account; a list needs a free name")
    for rule in (name, name + DEFAULT_RULE):
        if found.rules.get(rule, LIST_RULE) != LIST_RULE:
            raise RecordExists(f"domain {domain} has its own rule .qmail-{rule}; delete it first")
    if not await stores.lists.create(record):
        raise RecordExists(f"list {record.address} exists")
    await stores.directory.update_domain(
        domain,
        lambda r: r.changed(rules={**r.rules, name: LIST_RULE, name + DEFAULT_RULE: LIST_RULE}),
    )
    return record


async def existing(lists: state.ListDirectory, address: str) -> ListRecord:
    name, domain = parse_list(address)
    record = await lists.get(domain, name)
    if record is None:
        raise RecordMissing(f"no such list: {name}@{domain}")
    return record


async def domain_lists(lists: state.ListDirectory, domain: str) -> list[ListRecord]:
    """The lists of one stored domain name, by name."""
    return sorted((r for r in await lists.in_domain(domain)), key=lambda r: r.name)


def describe(record: ListRecord, subs: state.Subscribers) -> list[str]:
    """``qmesh list show``'s lines."""
    flags = [
        f
        for f, on in (
            ("moderated", record.moderated),
            ("subscribers-only", record.subscribers_only),
            ("digest", record.digest),
            ("archive", record.archive),
            ("verp", record.verp),
            ("personal", record.personal),
        )
        if on
    ]
    lines = [
        f"list: {record.address}",
        f"flags: {' '.join(flags) or 'open'}",
        f"prefix: {record.prefix}",
        f"owner: {record.owner or '-'}",
        f"moderators: {' '.join(record.moderators) or '-'}",
        f"bounce period: {record.bounce_period}s",
    ]
    if record.digest:
        lines.append(
            f"digest: every {record.digest_every} posts or {record.digest_hours:g} hours"
            f" ({record.digest_format})"
        )
    if record.moderated:
        lines.append(f"held posts go back after {record.moderation_hours:g} hours")
    lines.append(f"subscribers: {len(subs.sub)}  digest subscribers: {len(subs.digest)}")
    return lines


async def delete_list(stores: ListStores, record: ListRecord) -> None:
    """Remove the list's rules, record, subscribers and state."""
    name = record.name

    def without(r: DomainRecord) -> DomainRecord:
        rules = {
            k: v
            for k, v in r.rules.items()
            if k not in (name, name + DEFAULT_RULE) or v != LIST_RULE
        }
        return r.changed(rules=rules)

    with contextlib.suppress(RecordMissing):
        await stores.directory.update_domain(record.domain, without)
    await stores.lists.delete(record.domain, name)
    await state.forget_list(stores.kv, record.address)


async def add_subscribers(
    kv: KeyValue, record: ListRecord, addresses: list[str], digest: bool = False
) -> int:
    """ezmlm-sub: subscribe at once, without confirmation; the number newly added."""
    checked = check_addresses(addresses)
    return await state.subscribe_many(kv, record.address, checked, "digest" if digest else "sub")


async def remove_subscribers(
    kv: KeyValue, record: ListRecord, addresses: list[str], digest: bool = False
) -> int:
    """ezmlm-unsub: the number removed."""
    removed = 0
    for a in check_addresses(addresses):
        removed += await state.subscribe(
            kv, record.address, a, "digest" if digest else "sub", add=False
        )
    return removed
