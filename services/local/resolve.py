"""From address to rules: the account lookup and the rule search (LOCAL-03, LOCAL-04, LOCAL-10).

Pure functions over a snapshot of directory records (LOCAL-55): the adapter reads the domain
record and the candidate accounts in the order :func:`candidates` gives, and hands what it
found to :func:`target`; :func:`find_rule` then picks the rule, :func:`newsender` the sender
of forwards (LOCAL-22). Failures are raised as qmail's ``Z``/``D`` texts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from qmesh.contract.envelope import DOUBLE_BOUNCE_SENDER
from qmesh.contract.errors import Permanent, Temporary
from qmesh.directory.names import is_account_name, safeext
from qmesh.directory.records import Vacation

MAX_CANDIDATE = 64  # LOCAL-03
ALIAS_USER = "alias"  # USER of programs run by domain rules (LOCAL-19)

NO_MAILBOX = "Sorry, no mailbox here by that name. (#5.1.1)"
NO_DOMAIN = "Unable to find domain record. (#4.3.0)"

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class RuleBook(Protocol):
    """What the search needs of a directory record (LOCAL-51, LOCAL-52)."""

    @property
    def enabled(self) -> bool: ...

    @property
    def rules(self) -> Mapping[str, str]: ...


class AccountView(RuleBook, Protocol):
    @property
    def name(self) -> str: ...

    @property
    def quota(self) -> int | None: ...

    @property
    def vacation(self) -> Vacation | None: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """An account name to look up, with the dash and ext it leaves (LOCAL-03)."""

    name: str
    dash: str  # "" when the whole local part is the name, else "-"
    ext: str  # from the original local part, case preserved


@dataclass(frozen=True, slots=True)
class Target:
    """Whose rules apply: an account's, or the namespace's domain rules (``account`` None)."""

    account: str | None
    rules: Mapping[str, str]
    dash: str
    ext: str
    quota: int | None = None
    vacation: Vacation | None = None  # the account's vacation reply, if on

    @property
    def user(self) -> str:
        return self.account if self.account is not None else ALIAS_USER


@dataclass(frozen=True, slots=True)
class RuleChoice:
    """The rule to run: ``name`` None means there was none (default delivery, LOCAL-12)."""

    name: str | None
    text: str
    default: str | None  # the DEFAULT variable (LOCAL-10), None when unset


def candidates(local: str) -> tuple[Candidate, ...]:
    """LOCAL-03: prefixes ending at the end or just before a ``-``, longest first.

    Lower-cased (ASCII) for the lookup, at most 64 characters, valid account names only
    (LOCAL-53), never ``root`` (LOCAL-06).
    """
    lowered = local.translate(_ASCII_LOWER)
    ends = [len(local)] + [i for i in range(len(local) - 1, -1, -1) if local[i] == "-"]
    found: list[Candidate] = []
    for end in ends:
        name = lowered[:end]
        if len(name) > MAX_CANDIDATE or not is_account_name(name):
            continue
        if end == len(local):
            found.append(Candidate(name, "", ""))
        else:
            found.append(Candidate(name, "-", local[end + 1 :]))
    return tuple(found)


def target(
    local: str,
    domain: RuleBook | None,
    found: tuple[Candidate, AccountView] | None,
) -> Target:
    """The account that matched, else the domain rules (LOCAL-04, LOCAL-51)."""
    if found is not None and (domain is None or domain.enabled):
        candidate, account = found
        return Target(
            account.name,
            account.rules,
            candidate.dash,
            candidate.ext,
            account.quota,
            account.vacation,
        )
    if domain is None:
        raise Temporary(NO_DOMAIN)
    rules: Mapping[str, str] = domain.rules if domain.enabled else {}
    return Target(None, rules, "-", local)


def search_order(ext: str) -> tuple[tuple[str, str | None], ...]:
    """LOCAL-10 with dash ``-``: (rule name, DEFAULT) in the order they are tried.

    ``foo-bar`` → ``foo-bar``, ``foo-default``, ``default``; an empty ext goes straight to
    ``default``; DEFAULT is the part of the original ext that ``default`` stands for.
    """
    safe = safeext(ext)
    order: list[tuple[str, str | None]] = []
    if safe:
        exact_default = ext[len(ext) - 7 :] if safe.endswith("default") else None
        order.append((safe, exact_default))
    for i in range(len(safe), 0, -1):
        if safe[i - 1] == "-":
            order.append((safe[:i] + "default", ext[i:]))
    order.append(("default", ext))
    seen: set[str] = set()
    unique: list[tuple[str, str | None]] = []
    for name, default in order:
        if name not in seen:
            seen.add(name)
            unique.append((name, default))
    return tuple(unique)


def find_rule(t: Target, defaultdelivery: str) -> RuleChoice:
    """LOCAL-10, LOCAL-12, LOCAL-14, LOCAL-26: the rule text to run for ``t``.

    A missing rule ``""`` (dash empty) or an empty rule means ``defaultdelivery``. With dash
    ``-`` and no candidate: ``D`` no mailbox.
    """
    if not t.dash:
        text = t.rules.get("")
        return RuleChoice("" if text is not None else None, text or defaultdelivery, None)
    for name, default in search_order(t.ext):
        if name in t.rules:
            return RuleChoice(name, t.rules[name] or defaultdelivery, default)
    raise Permanent(NO_MAILBOX)


def has_rule(t: Target) -> bool:
    """LOCAL-34: would delivery find something to do (no loop scan, no execution)?"""
    if not t.dash:
        return t.account is not None
    return any(name in t.rules for name, _ in search_order(t.ext))


def newsender(sender: str, local: str, domain: str, t: Target) -> str:
    """LOCAL-22: the envelope sender of forwards, moved to ``<local>-owner`` when ruled so."""
    if sender in ("", DOUBLE_BOUNCE_SENDER):
        return sender
    owner = f"{safeext(t.ext)}-owner" if t.dash else "owner"
    if owner not in t.rules:
        return sender
    if f"{owner}-default" in t.rules:
        return f"{local}-owner-@{domain}-@[]"
    return f"{local}-owner@{domain}"
