"""Directory administration: the operations behind ``qmesh domain|user|rule`` (LOCAL-56, LOCAL-58).

Each operation checks names (LOCAL-53, LOCAL-54) and rule texts (LOCAL-16, LOCAL-57, LOCAL-61)
before anything is written, then writes with compare-and-set (LOCAL-55). Refusals are
:class:`~qmesh.directory.errors.DirectoryError` subclasses naming the bad value; a directory
that cannot be reached is ``Temporary``. Passwords are hashed here, off the event loop, and
only the verifier is stored (LOCAL-59).
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from qmesh.directory.errors import (
    DirectoryError,
    InvalidName,
    InvalidRule,
    RecordExists,
    RecordMissing,
    Refused,
)
from qmesh.directory.names import check_account_name, domain_name, rule_file_name, rule_name
from qmesh.directory.namespaces import Namespaces, Target
from qmesh.directory.passwords import OWASP, HashParams, check_password, hash_password
from qmesh.directory.records import (
    MAX_QUOTA,
    MAX_VACATION_DAYS,
    AccountRecord,
    DomainRecord,
    Vacation,
)
from qmesh.directory.rules import POSTMASTER, check_rule_text, forward_problem, shadowing_accounts
from qmesh.directory.store import Directory
from qmesh.store.base import BlobStore

log = logging.getLogger(__name__)

DEFAULT_POSTMASTER = "postmaster"


def postmaster_rule(domain: str, postmaster: str | None) -> tuple[str | None, str]:
    """(account of ``domain`` to create if missing, or None; the postmaster rule text).

    ``postmaster`` is an account name of the new domain (default ``postmaster``), an address
    in it, or a complete address elsewhere (LOCAL-56).
    """
    target = DEFAULT_POSTMASTER if postmaster is None else postmaster
    local, at, rest = target.rpartition("@")
    if at and domain_name(rest) != domain:
        problem = forward_problem(target)
        if problem is not None:
            raise InvalidName(f"invalid postmaster address {target!r}: {problem}")
        return None, f"&{target}\n"
    account = check_account_name((local if at else target).lower())
    return account, f"&{account}@{domain}\n"


async def add_domain(
    directory: Directory,
    name: str,
    postmaster: str | None = None,
    *,
    namespaces: Namespaces | None = None,
) -> DomainRecord:
    """Create domain ``name`` with its domain rule ``postmaster`` (LOCAL-56, LOCAL-27).

    Refused for a ``locals`` domain other than the canonical one and for a ``virtualdomains``
    key (LOCAL-58): their records would never be used (LOCAL-51).
    """
    domain = domain_name(name)
    if namespaces is not None and (why := namespaces.shadowed(domain)) is not None:
        raise Refused(f"refusing to add domain {domain}: {why}, so its record would never be used")
    if await directory.get_domain(domain) is not None:
        raise RecordExists(f"domain {domain} already exists")
    account, text = postmaster_rule(domain, postmaster)
    record = DomainRecord(
        name=domain, rules={POSTMASTER: check_rule_text(POSTMASTER, text, domain_rule=True)}
    )
    created = False
    if account is not None and await directory.get_account(domain, account) is None:
        await directory.create_account(AccountRecord(domain=domain, name=account))
        created = True
    try:
        await directory.create_domain(record)
    except DirectoryError:
        if created and account is not None:
            await directory.delete_account(domain, account)
        raise
    return record


async def set_domain_enabled(directory: Directory, name: str, enabled: bool) -> DomainRecord:
    return await directory.update_domain(domain_name(name), lambda r: r.changed(enabled=enabled))


async def delete_domain(directory: Directory, name: str) -> None:
    """Delete a domain record; refused while the domain has accounts (LOCAL-58)."""
    domain = domain_name(name)
    accounts = await directory.list_accounts(domain)
    if accounts:
        raise Refused(
            f"domain {domain} still has {len(accounts)} account(s), e.g. {accounts[0].address}; "
            "delete them first"
        )
    await directory.delete_domain(domain)


async def _mailbox_left(mailboxes: BlobStore | None, target: Target) -> bool:
    if mailboxes is None:
        return False
    return bool(await mailboxes.list(f"{target.domain}/{target.account}/"))


async def add_user(
    directory: Directory,
    target: Target,
    password: str | None,
    *,
    params: HashParams = OWASP,
    mailboxes: BlobStore | None = None,
) -> AccountRecord:
    """Create an account; ``password`` None makes one that cannot log in (LOCAL-59).

    With ``mailboxes`` given, refused while objects of an old account of that name remain,
    so a new account never sees an old account's mail (LOCAL-58, CLEAN-08).
    """
    account = _account(target)
    if await directory.get_domain(target.domain) is None:
        raise RecordMissing(
            f"no such domain: {target.domain} (add it first: qmesh domain add {target.domain})"
        )
    verifier = await _verifier(password, params)
    if await _mailbox_left(mailboxes, target):
        raise Refused(f"mail of a deleted account {target} is still being removed; try again later")
    record = AccountRecord(domain=target.domain, name=account, verifier=verifier)
    await directory.create_account(record)
    return record


def _account(target: Target) -> str:
    if target.account is None:
        raise InvalidName(f"{target} names a domain, not an account")
    return target.account


async def _verifier(password: str | None, params: HashParams) -> str | None:
    if password is None:
        return None
    check_password(password)
    return await asyncio.to_thread(hash_password, password, params)


async def set_password(
    directory: Directory, target: Target, password: str | None, *, params: HashParams = OWASP
) -> AccountRecord:
    """Set (or with None remove) the account's password; only the verifier is stored."""
    verifier = await _verifier(password, params)
    return await directory.update_account(
        target.domain, _account(target), lambda r: r.changed(verifier=verifier)
    )


async def set_quota(directory: Directory, target: Target, quota: int | None) -> AccountRecord:
    """Set the mailbox quota in bytes (LOCAL-33); None removes it."""
    if quota is not None and not 1 <= quota <= MAX_QUOTA:
        raise DirectoryError(f"invalid quota {quota}: use a number of bytes from 1, or none")
    return await directory.update_account(
        target.domain, _account(target), lambda r: r.changed(quota=quota)
    )


async def set_enabled(directory: Directory, target: Target, enabled: bool) -> AccountRecord:
    return await directory.update_account(
        target.domain, _account(target), lambda r: r.changed(enabled=enabled)
    )


def vacation_reply(subject: str, text: str, days: int = MAX_VACATION_DAYS) -> Vacation:
    """A checked vacation reply; CR LF becomes LF in the text, and the text ends in one."""
    body = text.replace("\r\n", "\n").strip("\n") + "\n"
    if not body.strip():
        raise InvalidName("invalid vacation text: say something")
    try:
        return Vacation(subject=subject.strip(), text=body, days=days)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise InvalidName(f"invalid vacation {where}: {first['msg']}") from None


async def set_vacation(
    directory: Directory, target: Target, vacation: Vacation | None
) -> AccountRecord:
    """Turn the account's vacation reply on (or with None off)."""
    return await directory.update_account(
        target.domain, _account(target), lambda r: r.changed(vacation=vacation)
    )


async def delete_user(
    directory: Directory, target: Target, *, mailboxes: BlobStore | None = None
) -> int:
    """Delete the account, then its mailbox objects if ``mailboxes`` is given (LOCAL-58).

    Returns the number of mailbox objects deleted.
    """
    await directory.delete_account(target.domain, _account(target))
    if mailboxes is None:
        return 0
    objects = await mailboxes.list(f"{target.domain}/{target.account}/")
    for blob in objects:
        await mailboxes.delete(blob.key)
    return len(objects)


async def get_rules(directory: Directory, target: Target) -> dict[str, str]:
    """All rules of an account or domain, by stored name."""
    if target.account is None:
        domain = await directory.get_domain(target.domain)
        if domain is None:
            raise RecordMissing(f"no such domain: {target.domain}")
        return dict(domain.rules)
    account = await directory.get_account(target.domain, target.account)
    if account is None:
        raise RecordMissing(f"no such account: {target}")
    return dict(account.rules)


async def show_rule(directory: Directory, target: Target, name: str) -> str:
    rule = rule_name(name)
    rules = await get_rules(directory, target)
    if rule not in rules:
        raise RecordMissing(f"{target} has no rule {rule_file_name(rule)}")
    return rules[rule]


async def set_rule(directory: Directory, target: Target, name: str, text: str) -> str:
    """Store rule ``name`` (``.qmail``, ``.qmail-<ext>`` or ``<ext>``); returns the stored name."""
    rule = rule_name(name)
    if target.account is None:
        if rule == "":
            raise InvalidRule(
                f"{target}: a domain has no rule .qmail; domain rules are .qmail-<name>"
            )
        check_rule_text(rule, text, domain_rule=True)
        await directory.update_domain(
            target.domain, lambda r: r.changed(rules={**r.rules, rule: text})
        )
    else:
        check_rule_text(rule, text, domain_rule=False)
        await directory.update_account(
            target.domain, target.account, lambda r: r.changed(rules={**r.rules, rule: text})
        )
    log.info("directory.rule_set", extra={"target": str(target), "rule": rule})
    return rule


async def delete_rule(directory: Directory, target: Target, name: str) -> None:
    """Delete a rule; a domain's ``postmaster`` rule is never deleted (LOCAL-27)."""
    rule = rule_name(name)
    shown = rule_file_name(rule)

    def without(rules: dict[str, str]) -> dict[str, str]:
        if rule not in rules:
            raise RecordMissing(f"{target} has no rule {shown}")
        return {k: v for k, v in rules.items() if k != rule}

    if target.account is None:
        if rule == POSTMASTER:
            raise Refused(
                f"the domain rule {shown} of {target.domain} cannot be deleted; every domain "
                "must resolve postmaster (set another text instead)"
            )
        await directory.update_domain(target.domain, lambda r: r.changed(rules=without(r.rules)))
    else:
        await directory.update_account(
            target.domain, target.account, lambda r: r.changed(rules=without(r.rules))
        )
    log.info("directory.rule_deleted", extra={"target": str(target), "rule": rule})


async def shadowing_account(directory: Directory, target: Target, name: str) -> str | None:
    """The account that takes, first, every address domain rule ``name`` would serve.

    Accounts come before domain rules (LOCAL-03, LOCAL-04), as a qmail user came before the
    alias user's ``.qmail-<name>``: while that account exists the rule is never used, and the
    CLI says so (hardening #14). ``None`` for an account's own rules.
    """
    if target.account is not None:
        return None
    for account in shadowing_accounts(rule_name(name)):
        if await directory.get_account(target.domain, account) is not None:
            return account
    return None


async def rules_shadowed_by(directory: Directory, target: Target) -> list[str]:
    """The domain rules that account ``target`` keeps from being used (hardening #14).

    A rule that only forwards to this very account (``domain add``'s ``postmaster`` rule,
    LOCAL-56) loses nothing and is not named.
    """
    account = _account(target)
    domain = await directory.get_domain(target.domain)
    if domain is None:
        return []
    own = f"&{account}@{target.domain}\n"
    return sorted(
        rule
        for rule, text in domain.rules.items()
        if account in shadowing_accounts(rule) and text.strip() + "\n" != own
    )
