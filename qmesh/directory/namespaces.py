"""Which namespace an address or a login names (SEND-16, POP3-05, LOCAL-50).

A ``locals`` domain is an alias of the canonical local domain; any other domain is its own
namespace if it has a directory record. A bare name (no ``@``) means the canonical local
domain. The CLI uses :func:`parse_address` / :func:`parse_target` and reports bad input;
a login goes through :func:`parse_login`, which never says why a name is unusable, because a
malformed name must fail exactly like a wrong password (POP3-05).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qmesh.contract.envelope import split_address
from qmesh.directory.errors import DirectoryError, InvalidName
from qmesh.directory.names import check_account_name, domain_name

MAX_LOGIN_BYTES = 512  # qmail's checkpassword limit for name and password together


def _lenient(domain: str) -> str:
    try:
        return domain_name(domain)
    except InvalidName:
        return domain.lower()


@dataclass(frozen=True, slots=True)
class Namespaces:
    """The controls that map a domain to its namespace, in stored (A-label) form."""

    canonical: str | None  # the canonical local domain (SEND-16); None: no locals, no me
    locals: frozenset[str]
    virtual_domains: frozenset[str] = frozenset()  # virtualdomains key 2 (SEND-13)
    virtual_addresses: frozenset[str] = frozenset()  # virtualdomains key 1, lower-cased

    @classmethod
    def build(
        cls,
        canonical: str | None,
        locals: Iterable[str],
        virtualdomains: Iterable[tuple[str, str]] = (),
    ) -> Namespaces:
        """From the controls as written: ``locals`` entries, ``virtualdomains`` (key, prepend)."""
        domains: set[str] = set()
        addresses: set[str] = set()
        for key, _prepend in virtualdomains:
            if "@" in key:
                local, domain = split_address(key)
                addresses.add(f"{local.lower()}@{_lenient(domain)}")
            elif key and not key.startswith("."):
                domains.add(_lenient(key))
        home = _lenient(canonical) if canonical else None
        return cls(
            canonical=home,
            locals=frozenset(_lenient(d) for d in locals) | ({home} if home else set()),
            virtual_domains=frozenset(domains),
            virtual_addresses=frozenset(addresses),
        )

    def namespace(self, domain: str) -> str:
        """The namespace domain of ``domain`` (already in stored form)."""
        if domain in self.locals and self.canonical is not None:
            return self.canonical
        return domain

    def shadowed(self, domain: str) -> str | None:
        """Why a directory record for ``domain`` would never be used (LOCAL-51), or None."""
        if domain in self.locals:
            if domain == self.canonical:
                return None
            return f"{domain} is listed in control/locals, an alias of {self.canonical}"
        if domain in self.virtual_domains:
            return f"{domain} is a key of control/virtualdomains"
        if any(a.endswith("@" + domain) for a in self.virtual_addresses):
            return f"an address of {domain} is a key of control/virtualdomains"
        return None

    def default_domain(self, text: str) -> str:
        if self.canonical is None:
            raise InvalidName(
                f"{text!r} names no domain and there is no canonical local domain "
                "(control/locals or control/me)"
            )
        return self.canonical


@dataclass(frozen=True, slots=True)
class Target:
    """An account (``name@domain``) or a domain's own rules (``@domain``)."""

    domain: str
    account: str | None

    def __str__(self) -> str:
        return f"{self.account or ''}@{self.domain}"


def parse_address(text: str, namespaces: Namespaces) -> Target:
    """``account@domain`` or a bare ``account`` (canonical local domain), for the CLI.

    Both parts are lower-cased, the domain converted to A-labels and mapped to its namespace.
    """
    target = parse_target(text, namespaces)
    if target.account is None:
        raise InvalidName(f"{text!r} names a domain, not an account (use account@domain)")
    return target


def parse_target(text: str, namespaces: Namespaces) -> Target:
    """Like :func:`parse_address`, also accepting ``@domain`` for a domain's rules."""
    local, at, domain_text = text.rpartition("@")
    if not at:
        local, domain = text, namespaces.default_domain(text)
    else:
        domain = namespaces.namespace(domain_name(domain_text))
    if not local:
        if at:
            return Target(domain, None)
        raise InvalidName("empty address")
    return Target(domain, check_account_name(local.lower()))


def parse_login(login: str, namespaces: Namespaces) -> Target | None:
    """The account a POP3 / SMTP AUTH login names, or None (POP3-05).

    None covers every unusable name: malformed, ``root``, no domain and no canonical domain,
    a ``virtualdomains`` domain or address. The caller then fails the login exactly as for a
    wrong password, spending one verification.
    """
    if not login or len(login.encode("utf-8", "surrogateescape")) > MAX_LOGIN_BYTES:
        return None
    if "@" in login:
        local, domain_text = split_address(login)
        try:
            domain = domain_name(domain_text)
        except DirectoryError:
            return None
        if domain not in namespaces.locals:
            if domain in namespaces.virtual_domains:
                return None
            if f"{local.lower()}@{domain}" in namespaces.virtual_addresses:
                return None
        text = f"{local}@{domain}"
    else:
        text = login
    try:
        target = parse_target(text, namespaces)
    except DirectoryError:
        return None
    return target if target.account is not None else None
