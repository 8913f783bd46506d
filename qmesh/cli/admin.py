"""``qmesh domain|user|rule``: the directory's admin commands (LOCAL-58), vpopmail-style.

    qmesh domain add DOMAIN [--postmaster ADDRESS]    qmesh domain list | del | enable | disable
    qmesh user add ADDRESS --password-stdin|--no-password
    qmesh user list [DOMAIN] | passwd ADDRESS --password-stdin|--no-password
    qmesh user del|enable|disable ADDRESS             qmesh user quota ADDRESS SIZE|none
    qmesh user vacation ADDRESS --subject TEXT [--days N]  (text on stdin) | --off
    qmesh rule set TARGET NAME   (text on stdin)      qmesh rule show TARGET [NAME]
    qmesh rule del TARGET NAME

ADDRESS is ``account@domain`` or a bare ``account`` of the canonical local domain (first line
of ``locals``, else ``me``, from ``$QMESH_CONTROL``, default ``./control``); TARGET is an
ADDRESS or ``@domain`` for a domain's own rules; NAME is ``.qmail``, ``.qmail-<ext>`` or
``<ext>``. Passwords are read from the first line of standard input, never from the command
line or the environment. Exit status: 0 done, 1 refused (the message names the bad value),
111 temporary (NATS unreachable): try again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from qmesh.cli.connect import nats_session
from qmesh.contract.errors import Temporary
from qmesh.control.loader import load_controls
from qmesh.control.parse import ControlError
from qmesh.directory import admin
from qmesh.directory.errors import DirectoryError, InvalidName, RecordMissing
from qmesh.directory.names import domain_name, rule_file_name, rule_name
from qmesh.directory.namespaces import Namespaces, Target, parse_address, parse_target
from qmesh.directory.store import Directory, DirectoryUnavailable
from qmesh.store.base import BlobStore

EXIT_OK, EXIT_REFUSED, EXIT_TEMPORARY = 0, 1, 111
DEFAULT_CONTROL = "./control"


@dataclass
class Context:
    """What a command works with; NATS is connected only when the directory is first used,
    after the command's own input has been checked."""

    environ: Mapping[str, str]
    stdin: TextIO
    stdout: TextIO
    stack: contextlib.AsyncExitStack
    mailboxes: BlobStore | None = None
    _namespaces: Namespaces | None = field(default=None, init=False)
    _directory: Directory | None = field(default=None, init=False)

    async def directory(self) -> Directory:
        if self._directory is None:
            nc = await self.stack.enter_async_context(nats_session(self.environ, "admin"))
            self._directory = await Directory.open(nc.jetstream())
        return self._directory

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")

    @property
    def control_dir(self) -> Path:
        return Path(self.environ.get("QMESH_CONTROL") or DEFAULT_CONTROL)

    @property
    def namespaces(self) -> Namespaces:
        """From the control directory, read once, only by commands that need it.

        Without a control directory there is no canonical local domain and no ``locals``:
        full addresses still work, bare names do not, and ``domain add`` refuses.
        """
        if self._namespaces is None:
            if not self.control_dir.is_dir():
                self._namespaces = Namespaces.build(None, [])
            else:
                controls = load_controls(self.control_dir, self.environ)
                self._namespaces = Namespaces.build(
                    controls.canonical_local_domain(), controls.locals, controls.virtualdomains
                )
        return self._namespaces

    def address(self, text: str) -> Target:
        return parse_address(text, self.namespaces)

    def target(self, text: str) -> Target:
        return parse_target(text, self.namespaces)

    def password(self, args: argparse.Namespace) -> str | None:
        """The first line of standard input (``--password-stdin``), or None (``--no-password``)."""
        if args.no_password:
            return None
        line = self.stdin.readline()
        if not line:
            raise DirectoryError("no password on standard input (or use --no-password)")
        return line.removesuffix("\n").removesuffix("\r")


Handler = Callable[[Context, argparse.Namespace], Awaitable[None]]


async def _domain_add(ctx: Context, args: argparse.Namespace) -> None:
    if not ctx.control_dir.is_dir():
        raise DirectoryError(
            f"control directory {ctx.control_dir} not found: a new domain is checked against "
            "control/locals and control/virtualdomains (set QMESH_CONTROL)"
        )
    namespaces = ctx.namespaces
    record = await admin.add_domain(
        await ctx.directory(), args.domain, args.postmaster, namespaces=namespaces
    )
    forward = record.rules["postmaster"].strip().removeprefix("&")
    ctx.say(f"added domain {record.name} (postmaster -> {forward})")


async def _domain_list(ctx: Context, args: argparse.Namespace) -> None:
    for record in await (await ctx.directory()).list_domains():
        ctx.say(f"{record.name}\t{'enabled' if record.enabled else 'disabled'}")


async def _domain_del(ctx: Context, args: argparse.Namespace) -> None:
    await admin.delete_domain(await ctx.directory(), args.domain)
    ctx.say(f"deleted domain {domain_name(args.domain)}")


async def _domain_enable(ctx: Context, args: argparse.Namespace) -> None:
    enabled = args.action == "enable"
    record = await admin.set_domain_enabled(await ctx.directory(), args.domain, enabled)
    ctx.say(f"domain {record.name} {args.action}d")


async def _user_add(ctx: Context, args: argparse.Namespace) -> None:
    target = ctx.address(args.address)
    password = ctx.password(args)
    directory = await ctx.directory()
    record = await admin.add_user(directory, target, password, mailboxes=ctx.mailboxes)
    ctx.say(f"added account {record.address}" + ("" if password else " (no password)"))
    for rule in await admin.rules_shadowed_by(directory, target):
        ctx.say(
            f"note: the domain rule {rule_file_name(rule)} of @{target.domain} is no longer "
            f"used: account {record.address} receives that mail first"
        )


async def _user_list(ctx: Context, args: argparse.Namespace) -> None:
    if args.domain is not None:
        domain = ctx.namespaces.namespace(domain_name(args.domain))
        directory = await ctx.directory()
        if await directory.get_domain(domain) is None:
            raise RecordMissing(f"no such domain: {domain}")
        domains = [domain]
    else:
        directory = await ctx.directory()
        domains = [d.name for d in await directory.list_domains()]
    for domain in domains:
        for r in await directory.list_accounts(domain):
            ctx.say(
                f"{r.address}\t{'enabled' if r.enabled else 'disabled'}\t"
                f"{'password' if r.verifier else 'no-password'}\t"
                f"quota={r.quota if r.quota is not None else 'none'}"
            )


async def _user_passwd(ctx: Context, args: argparse.Namespace) -> None:
    target = ctx.address(args.address)
    password = ctx.password(args)
    await admin.set_password(await ctx.directory(), target, password)
    ctx.say(f"password of {target} {'set' if password else 'removed'}")


async def _user_del(ctx: Context, args: argparse.Namespace) -> None:
    target = ctx.address(args.address)
    removed = await admin.delete_user(await ctx.directory(), target, mailboxes=ctx.mailboxes)
    if ctx.mailboxes is None:
        ctx.say(f"deleted account {target} (its mailbox objects were not removed)")
    else:
        ctx.say(f"deleted account {target} and {removed} mailbox object(s)")


async def _user_enable(ctx: Context, args: argparse.Namespace) -> None:
    target = ctx.address(args.address)
    await admin.set_enabled(await ctx.directory(), target, args.action == "enable")
    ctx.say(f"account {target} {args.action}d")


QUOTA_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}  # vsetuserquota's 50M


def parse_quota(text: str) -> int | None:
    """BYTES (or KiB, MiB, GiB with ``K``, ``M``, ``G``, as vsetuserquota takes ``50M``) or
    ``none``, as ``qmesh user quota`` and the admin pages take it."""
    if text.lower() in ("none", "noquota"):
        return None
    unit = QUOTA_UNITS.get(text[-1:].upper(), 1)
    digits = text[:-1] if unit > 1 else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):  # not "²", not 5000
        raise DirectoryError(
            f"invalid quota {text[:40]!r}: use a number of bytes (or with K, M, G), or none"
        )
    return int(digits) * unit


async def _user_quota(ctx: Context, args: argparse.Namespace) -> None:
    target = ctx.address(args.address)
    quota = parse_quota(args.quota)
    await admin.set_quota(await ctx.directory(), target, quota)
    ctx.say(f"quota of {target}: {'none' if quota is None else f'{quota} bytes'}")


async def _user_vacation(ctx: Context, args: argparse.Namespace) -> None:
    target = ctx.address(args.address)
    if args.off:
        await admin.set_vacation(await ctx.directory(), target, None)
        ctx.say(f"vacation reply of {target}: off")
        return
    if args.subject is None:
        raise InvalidName("give --subject TEXT (and the reply's text on stdin), or --off")
    vacation = admin.vacation_reply(args.subject, ctx.stdin.read(), args.days)
    await admin.set_vacation(await ctx.directory(), target, vacation)
    ctx.say(f"vacation reply of {target}: on, once in {vacation.days} days per sender")


async def _rule_set(ctx: Context, args: argparse.Namespace) -> None:
    target = ctx.target(args.target)
    text = ctx.stdin.read().replace("\r\n", "\n")
    directory = await ctx.directory()
    rule = await admin.set_rule(directory, target, args.name, text)
    ctx.say(f"rule {rule_file_name(rule)} of {target} set")
    account = await admin.shadowing_account(directory, target, rule)
    if account is not None:  # accounts come first (LOCAL-03, LOCAL-04; hardening #14)
        own = rule_file_name(rule[len(account) + 1 :])  # the same mail, as the account's rule
        ctx.say(
            f"note: this rule is not used while account {account}@{target.domain} exists: "
            f"that account receives its mail first; change its rule instead "
            f"(qmesh rule set {account}@{target.domain} {own}) or delete the account"
        )


async def _rule_show(ctx: Context, args: argparse.Namespace) -> None:
    target = ctx.target(args.target)
    if args.name is not None:
        ctx.stdout.write(await admin.show_rule(await ctx.directory(), target, args.name))
        return
    for rule, text in sorted((await admin.get_rules(await ctx.directory(), target)).items()):
        ctx.say(f"==> {rule_file_name(rule)} <==")
        ctx.stdout.write(text if not text or text.endswith("\n") else text + "\n")


async def _rule_del(ctx: Context, args: argparse.Namespace) -> None:
    target = ctx.target(args.target)
    await admin.delete_rule(await ctx.directory(), target, args.name)
    ctx.say(f"rule {rule_file_name(rule_name(args.name))} of {target} deleted")


def _password_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    group.add_argument("--no-password", action="store_true", help="an account that cannot log in")


def add_admin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``domain``, ``user`` and ``rule`` on the root ``qmesh`` parser."""
    domain = sub.add_parser("domain", help="mail domains of the directory")
    dsub = domain.add_subparsers(dest="action", required=True)
    p = dsub.add_parser("add", help="add a domain and its postmaster rule")
    p.add_argument("domain")
    p.add_argument(
        "--postmaster", metavar="ADDRESS", help="account or address (default postmaster)"
    )
    p.set_defaults(admin=_domain_add)
    dsub.add_parser("list", help="list domains").set_defaults(admin=_domain_list)
    for action, handler in (
        ("del", _domain_del),
        ("enable", _domain_enable),
        ("disable", _domain_enable),
    ):
        p = dsub.add_parser(action, help=f"{action} a domain")
        p.add_argument("domain")
        p.set_defaults(admin=handler)

    user = sub.add_parser("user", help="accounts of the directory")
    usub = user.add_subparsers(dest="action", required=True)
    for action, handler in (("add", _user_add), ("passwd", _user_passwd)):
        p = usub.add_parser(action, help=f"{action} an account", allow_abbrev=False)
        p.add_argument("address")
        _password_options(p)
        p.set_defaults(admin=handler)
    p = usub.add_parser("list", help="list accounts")
    p.add_argument("domain", nargs="?")
    p.set_defaults(admin=_user_list)
    for action, handler in (
        ("del", _user_del),
        ("enable", _user_enable),
        ("disable", _user_enable),
    ):
        p = usub.add_parser(action, help=f"{action} an account")
        p.add_argument("address")
        p.set_defaults(admin=handler)
    p = usub.add_parser("quota", help="set or remove a mailbox quota")
    p.add_argument("address")
    p.add_argument("quota", metavar="SIZE|none", help="bytes, or with K, M, G: 50M")
    p.set_defaults(admin=_user_quota)
    p = usub.add_parser(
        "vacation", help="set (text on stdin) or turn off an account's vacation reply"
    )
    p.add_argument("address")
    p.add_argument("--subject", help="the reply's subject")
    p.add_argument("--days", type=int, default=7, help="days before a sender is answered again")
    p.add_argument("--off", action="store_true", help="turn the vacation reply off")
    p.set_defaults(admin=_user_vacation)

    rule = sub.add_parser("rule", help="delivery rules (.qmail) of accounts and domains")
    rsub = rule.add_subparsers(dest="action", required=True)
    p = rsub.add_parser("set", help="set a rule; its text is read from standard input")
    p.add_argument("target")
    p.add_argument("name")
    p.set_defaults(admin=_rule_set)
    p = rsub.add_parser("show", help="show one rule, or all with their names")
    p.add_argument("target")
    p.add_argument("name", nargs="?")
    p.set_defaults(admin=_rule_show)
    p = rsub.add_parser("del", help="delete a rule")
    p.add_argument("target")
    p.add_argument("name")
    p.set_defaults(admin=_rule_del)


async def run_admin(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    mailboxes: BlobStore | None = None,
) -> int:
    """Run one parsed admin command; returns the exit status."""
    env = os.environ if environ is None else environ
    err = sys.stderr if stderr is None else stderr
    handler: Handler = args.admin
    command = f"qmesh {args.command} {args.action}"
    try:
        async with contextlib.AsyncExitStack() as stack:
            ctx = Context(env, stdin or sys.stdin, stdout or sys.stdout, stack, mailboxes)
            await handler(ctx, args)
    except (DirectoryError, ControlError) as e:
        err.write(f"{command}: {e}\n")
        return EXIT_REFUSED
    except ValidationError as e:
        err.write(f"{command}: invalid setting: {e}\n")
        return EXIT_REFUSED
    except DirectoryUnavailable as e:
        err.write(f"{command}: {e.text} ({e.reason})\n")
        return EXIT_TEMPORARY
    except Temporary as e:
        err.write(f"{command}: {e.text}\n")
        return EXIT_TEMPORARY
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Parse and run only the admin commands (``python -m qmesh.cli.admin``)."""
    parser = argparse.ArgumentParser(prog="qmesh")
    add_admin_commands(parser.add_subparsers(dest="command", required=True))
    return asyncio.run(run_admin(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
