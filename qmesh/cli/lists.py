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
from typing import Any

from nats.aio.client import Client as NATS

from qmesh.bus.provision import ensure_kv
from qmesh.cli.admin import Context
from qmesh.cli.connect import nats_session
from qmesh.contract import subjects
from qmesh.directory.store import Directory
from qmesh.lists import state
from qmesh.lists.admin import (
    ListOptions,
    ListStores,
    add_subscribers,
    check_addresses,
    create_list,
    delete_list,
    describe,
    existing,
    list_record,
    remove_subscribers,
)


class Handles:
    def __init__(self, nc: NATS) -> None:
        self.js = nc.jetstream()

    async def open(self) -> ListStores:
        directory = await Directory.open(self.js)
        dkv = await ensure_kv(self.js, subjects.KV_DIRECTORY)
        kv = await ensure_kv(self.js, subjects.KV_LISTS)
        return ListStores(directory, state.ListDirectory(dkv), kv)


async def _handles(ctx: Context) -> ListStores:
    nc = await ctx.stack.enter_async_context(nats_session(ctx.environ, "admin"))
    return await Handles(nc).open()


async def _create(ctx: Context, args: argparse.Namespace) -> None:
    options = ListOptions(
        moderated=args.moderated,
        subscribers_only=args.subscribers_only,
        digest=args.digest,
        archive=args.archive,
        verp=args.verp,
        personal=args.personal,
        prefix=args.prefix or "",
        owner=args.owner,
        moderators=tuple(args.moderator or ()),
        bounce_period=args.bounce_period,
        digest_every=args.digest_every,
        digest_hours=args.digest_hours,
        digest_format=args.digest_format,
        moderation_hours=args.moderation_hours,
    )
    record = list_record(args.list, options)
    await create_list(await _handles(ctx), record)
    ctx.say(f"list {record.address} created")


async def _show(ctx: Context, args: argparse.Namespace) -> None:
    stores = await _handles(ctx)
    record = await existing(stores.lists, args.list)
    for line in describe(record, await state.subscribers(stores.kv, record.address)):
        ctx.say(line)


async def _del(ctx: Context, args: argparse.Namespace) -> None:
    stores = await _handles(ctx)
    record = await existing(stores.lists, args.list)
    await delete_list(stores, record)
    ctx.say(f"list {record.address} deleted")


async def _subscribers(ctx: Context, args: argparse.Namespace) -> None:
    stores = await _handles(ctx)
    record = await existing(stores.lists, args.list)
    subs = await state.subscribers(stores.kv, record.address)
    for address in subs.digest if args.digest else subs.sub:
        ctx.say(address)


async def _add(ctx: Context, args: argparse.Namespace) -> None:
    given = list(args.address) or [line.strip() for line in ctx.stdin if line.strip()]
    addresses = check_addresses(given)  # before connecting
    stores = await _handles(ctx)
    record = await existing(stores.lists, args.list)
    added = await add_subscribers(stores.kv, record, addresses, args.digest)
    ctx.say(f"{added} added to {record.address}")


async def _remove(ctx: Context, args: argparse.Namespace) -> None:
    addresses = check_addresses(list(args.address))
    stores = await _handles(ctx)
    record = await existing(stores.lists, args.list)
    removed = await remove_subscribers(stores.kv, record, addresses, args.digest)
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
