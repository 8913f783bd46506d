"""``qmesh list``: ezmlm-make, ezmlm-list, ezmlm-sub and ezmlm-unsub for the cluster (issue #15).

    qmesh list create LIST@DOMAIN [--moderated] [--subscribers-only] [--digest] [--archive]
                      [--verp] [--personal] [--prefix TEXT] [--owner ADDRESS]
                      [--moderator ADDRESS]... [--bounce-period SECONDS]
                      [--digest-every N] [--digest-hours H] [--digest-format mime|rfc1153]
                      [--moderation-hours H]
    qmesh list show LIST@DOMAIN          qmesh list del LIST@DOMAIN
    qmesh list subscribers LIST@DOMAIN [--digest]
    qmesh list add LIST@DOMAIN [ADDRESS...] [--digest]     (no ADDRESS: one a line on stdin)
    qmesh list remove LIST@DOMAIN ADDRESS... [--digest]

``create`` writes the list's record (``list.<domain>.<name>``) and its two domain rules,
``LIST`` and ``LIST-default`` (ezmlm-make's `.qmail` files), so smtpd accepts the list's
addresses and local hands their mail to the lists service. ``add`` and ``remove`` act at once,
without confirmation, as ezmlm-sub and ezmlm-unsub do for the owner. Exit status as the other
admin commands: 0 done, 1 refused, 111 temporary.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from nats.aio.client import Client as NATS

from qmesh.bus.provision import ensure_kv
from qmesh.cli.admin import Context
from qmesh.cli.connect import nats_session
from qmesh.contract import subjects
from qmesh.directory.errors import InvalidName, RecordExists, RecordMissing, Refused
from qmesh.directory.names import domain_name, is_account_name
from qmesh.directory.store import Directory
from qmesh.lists import state
from qmesh.lists.address import address_problem, canonical
from qmesh.lists.records import LIST_RULE, ListRecord

DEFAULT_RULE = "-default"


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


class Handles:
    def __init__(self, nc: NATS) -> None:
        self.js = nc.jetstream()

    async def open(self) -> tuple[Directory, state.ListDirectory, Any]:
        directory = await Directory.open(self.js)
        dkv = await ensure_kv(self.js, subjects.KV_DIRECTORY)
        kv = await ensure_kv(self.js, subjects.KV_LISTS)
        return directory, state.ListDirectory(dkv), kv


async def _handles(ctx: Context) -> tuple[Directory, state.ListDirectory, Any]:
    nc = await ctx.stack.enter_async_context(nats_session(ctx.environ, "admin"))
    return await Handles(nc).open()


async def _existing(lists: state.ListDirectory, text: str) -> ListRecord:
    name, domain = parse_list(text)
    record = await lists.get(domain, name)
    if record is None:
        raise RecordMissing(f"no such list: {name}@{domain}")
    return record


async def _create(ctx: Context, args: argparse.Namespace) -> None:
    name, domain = parse_list(args.list)
    owner = check_addresses([args.owner])[0] if args.owner else None
    moderators = check_addresses(args.moderator or [])
    if args.moderated and not (moderators or owner):
        raise Refused("a moderated list needs --moderator (or --owner) to accept posts")
    record = ListRecord(
        domain=domain,
        name=name,
        moderated=args.moderated,
        subscribers_only=args.subscribers_only,
        digest=args.digest,
        archive=args.archive,
        verp=args.verp,
        personal=args.personal,
        prefix=args.prefix or "",
        owner=owner,
        moderators=moderators,
        bounce_period=args.bounce_period,
        digest_every=args.digest_every,
        digest_hours=args.digest_hours,
        digest_format=args.digest_format,
        moderation_hours=args.moderation_hours,
    )
    directory, lists, _ = await _handles(ctx)
    found = await directory.get_domain(domain)
    if found is None:
        raise RecordMissing(f"no such domain: {domain} (qmesh domain add {domain})")
    if await directory.get_account(domain, name) is not None:
        raise RecordExists(f"{name}@{domain} is an account; a list needs a free name")
    for rule in (name, name + DEFAULT_RULE):
        if found.rules.get(rule, LIST_RULE) != LIST_RULE:
            raise RecordExists(f"domain {domain} has its own rule .qmail-{rule}; delete it first")
    if not await lists.create(record):
        raise RecordExists(f"list {record.address} exists")
    await directory.update_domain(
        domain,
        lambda r: r.changed(rules={**r.rules, name: LIST_RULE, name + DEFAULT_RULE: LIST_RULE}),
    )
    ctx.say(f"list {record.address} created")


async def _show(ctx: Context, args: argparse.Namespace) -> None:
    _, lists, kv = await _handles(ctx)
    record = await _existing(lists, args.list)
    subs = await state.subscribers(kv, record.address)
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
    ctx.say(f"list: {record.address}")
    ctx.say(f"flags: {' '.join(flags) or 'open'}")
    ctx.say(f"prefix: {record.prefix}")
    ctx.say(f"owner: {record.owner or '-'}")
    ctx.say(f"moderators: {' '.join(record.moderators) or '-'}")
    ctx.say(f"bounce period: {record.bounce_period}s")
    if record.digest:
        ctx.say(
            f"digest: every {record.digest_every} posts or {record.digest_hours:g} hours"
            f" ({record.digest_format})"
        )
    if record.moderated:
        ctx.say(f"held posts go back after {record.moderation_hours:g} hours")
    ctx.say(f"subscribers: {len(subs.sub)}  digest subscribers: {len(subs.digest)}")


async def _del(ctx: Context, args: argparse.Namespace) -> None:
    directory, lists, kv = await _handles(ctx)
    record = await _existing(lists, args.list)
    name = record.name

    def without(r: Any) -> Any:
        rules = {
            k: v
            for k, v in r.rules.items()
            if k not in (name, name + DEFAULT_RULE) or v != LIST_RULE
        }
        return r.changed(rules=rules)

    with contextlib.suppress(RecordMissing):
        await directory.update_domain(record.domain, without)
    await lists.delete(record.domain, name)
    await state.forget_list(kv, record.address)
    ctx.say(f"list {record.address} deleted")


async def _subscribers(ctx: Context, args: argparse.Namespace) -> None:
    _, lists, kv = await _handles(ctx)
    record = await _existing(lists, args.list)
    subs = await state.subscribers(kv, record.address)
    for address in subs.digest if args.digest else subs.sub:
        ctx.say(address)


async def _add(ctx: Context, args: argparse.Namespace) -> None:
    given = list(args.address) or [line.strip() for line in ctx.stdin if line.strip()]
    addresses = check_addresses(given)
    _, lists, kv = await _handles(ctx)
    record = await _existing(lists, args.list)
    added = await state.subscribe_many(
        kv, record.address, addresses, "digest" if args.digest else "sub"
    )
    ctx.say(f"{added} added to {record.address}")


async def _remove(ctx: Context, args: argparse.Namespace) -> None:
    addresses = check_addresses(list(args.address))
    _, lists, kv = await _handles(ctx)
    record = await _existing(lists, args.list)
    removed = 0
    for a in addresses:
        removed += await state.subscribe(
            kv, record.address, a, "digest" if args.digest else "sub", add=False
        )
    ctx.say(f"{removed} removed from {record.address}")


def add_list_commands(sub: Any) -> None:
    p = sub.add_parser("list", help="mailing lists (ezmlm)")
    lsub = p.add_subparsers(dest="action", required=True)
    c = lsub.add_parser("create", help="make a list (ezmlm-make)")
    c.add_argument("list")
    c.add_argument("--moderated", action="store_true")
    c.add_argument("--subscribers-only", action="store_true")
    c.add_argument("--digest", action="store_true")
    c.add_argument("--archive", action="store_true")
    c.add_argument(
        "--verp",
        action="store_true",
        help="a return path per subscriber (no shared SMTP transactions)",
    )
    c.add_argument(
        "--personal",
        action="store_true",
        help="a copy per subscriber, each with its own one-click unsubscribe link (RFC 8058)",
    )
    c.add_argument("--prefix", help="subject prefix, e.g. [announce]")
    c.add_argument("--owner")
    c.add_argument("--moderator", action="append")
    c.add_argument(
        "--bounce-period", type=int, default=10 * 86400, help="seconds of bounces before a probe"
    )
    c.add_argument("--digest-every", type=int, default=30, help="posts per digest at most")
    c.add_argument(
        "--digest-hours",
        type=float,
        default=24.0,
        help="hours the oldest waiting post waits for its digest, post or not (24: daily)",
    )
    c.add_argument(
        "--digest-format",
        choices=("mime", "rfc1153"),
        default="mime",
        help="MIME multipart/digest, or RFC 1153 plain text",
    )
    c.add_argument(
        "--moderation-hours",
        type=float,
        default=120.0,
        help="hours a held post waits for a moderator before it goes back (ezmlm-clean)",
    )
    c.set_defaults(admin=_create)
    for action, handler, text in (
        ("show", _show, "the list's settings"),
        ("del", _del, "delete a list"),
    ):
        q = lsub.add_parser(action, help=text)
        q.add_argument("list")
        q.set_defaults(admin=handler)
    q = lsub.add_parser("subscribers", help="list the subscribers (ezmlm-list)")
    q.add_argument("list")
    q.add_argument("--digest", action="store_true")
    q.set_defaults(admin=_subscribers)
    for action, handler, text in (
        ("add", _add, "subscribe (ezmlm-sub)"),
        ("remove", _remove, "unsubscribe (ezmlm-unsub)"),
    ):
        q = lsub.add_parser(action, help=text)
        q.add_argument("list")
        q.add_argument("address", nargs="*" if action == "add" else "+")
        q.add_argument("--digest", action="store_true")
        q.set_defaults(admin=handler)
