"""Sender and recipient policy (SMTPD-35, SMTPD-41..43). Pure: no sockets, no I/O."""

from __future__ import annotations

import ipaddress
from collections.abc import Container
from dataclasses import dataclass

from qmesh.contract.envelope import split_address
from qmesh.routing.classify import Local, RoutingRules, classify, is_hosted
from services.smtpd.verdict import Verdict

RELAY_DENIED = Verdict.of(
    "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
)
RELAY_BY_ROUTING = Verdict.of("553 5.7.1 sorry, relaying denied")


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    """``rcpthosts`` as loaded: ``None`` when the file does not exist (SMTPD-42 [MODERN]).

    The directory's domains count as entries too, as vadddomain adds a domain to
    ``rcpthosts``: ``qmesh domain add`` alone makes a domain's mail welcome, and ``domain
    del`` alone refuses it again, live (SEND-16, hardening #13).
    """

    rcpthosts: frozenset[str] | None
    morercpthosts: frozenset[str]
    rules: RoutingRules

    def listed(self, domain: str, directory_domains: Container[str]) -> bool:
        domain = domain.lower()
        if domain in directory_domains:
            return True
        if self.rcpthosts is None:  # never an open relay: the hosted domains instead
            return is_hosted(domain, self.rules, directory_domains)
        entries = self.rcpthosts | self.morercpthosts
        if domain in entries:
            return True
        return any(domain[i:] in entries for i, ch in enumerate(domain) if ch == ".")


def check_rcpt(
    address: str,
    *,
    policy: RelayPolicy,
    relayclient: str | None,
    directory_domains: Container[str],
) -> str | Verdict:
    """SMTPD-42 and SMTPD-43 for one recipient; ``relayclient`` is RELAYCLIENT or ``None``.

    The address to take (RELAYCLIENT appended), or the refusal.

    A non-relay client's recipient, with or without ``@``, is judged by the route ``send`` will
    give it: :func:`~qmesh.routing.classify.classify` is the one rewriting (SEND-10 envnoathost,
    SEND-11 percenthack, SEND-13 virtualdomains) that both use, so a recipient accepted here
    can only end local (hardening #1: ``user%other.example`` with ``percenthack`` listing
    ``envnoathost`` is refused).
    """
    if relayclient is not None:
        return address + relayclient
    if "@" in address:  # an @-less recipient passes SMTPD-42 (RFC 5321's <Postmaster>)
        _, domain = split_address(address)
        if not policy.listed(domain, directory_domains):
            return RELAY_DENIED
    if not isinstance(classify(address, policy.rules, directory_domains), Local):
        return RELAY_BY_ROUTING  # percent hack or exception (SMTPD-43)
    return address


def sender_is_bad(sender: str, badmailfrom: frozenset[str]) -> bool:
    """SMTPD-35: the whole address or its ``@domain``, case-insensitively; never ``<>``."""
    if not sender:
        return False
    sender = sender.lower()
    at = sender.rfind("@")
    return sender in badmailfrom or (at >= 0 and sender[at:] in badmailfrom)


def localiphost(address: str, ipme: frozenset[str], name: str) -> str:
    """SMTPD-41: ``user@[a.b.c.d]`` (or ``[IPv6:...]``) naming this system becomes ``user@name``."""
    local, at, domain = address.rpartition("@")
    if not at or not (domain.startswith("[") and domain.endswith("]")):
        return address
    literal = domain[1:-1]
    if literal[:5].upper() == "IPV6:":
        literal = literal[5:]
    try:
        ip = str(ipaddress.ip_address(literal))
    except ValueError:
        return address
    return f"{local}@{name}" if ip in ipme else address
