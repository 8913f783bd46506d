"""Local or remote: envnoathost, percenthack, locals, virtualdomains, directory domains.

Pure: the controls and the set of directory domain names are passed in (SEND-16 allows a
watched copy of the domain records). Matching is ASCII case-insensitive; addresses keep their
case (SEND-14).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

from qmesh.contract.envelope import split_address
from qmesh.control.values import Controls


@dataclass(frozen=True, slots=True)
class RoutingRules:
    """The controls that classify recipients, lower-cased where they are matched."""

    envnoathost: str
    percenthack: frozenset[str]
    locals: tuple[str, ...]
    virtualdomains: tuple[tuple[str, str], ...]  # (key, prepend) as written, in file order

    @property
    def canonical_domain(self) -> str:
        """The canonical local domain (SEND-16): the first entry of ``locals``."""
        return self.locals[0].lower()

    @classmethod
    def build(
        cls,
        *,
        envnoathost: str,
        percenthack: Sequence[str],
        locals: Sequence[str],
        virtualdomains: Sequence[tuple[str, str]],
    ) -> RoutingRules:
        if not locals:
            raise ValueError("no canonical local domain: neither locals nor me is set")
        return cls(
            envnoathost=envnoathost,
            percenthack=frozenset(d.lower() for d in percenthack),
            locals=tuple(locals),
            virtualdomains=tuple(virtualdomains),
        )

    @classmethod
    def from_controls(cls, c: Controls) -> RoutingRules:
        """The rules in force; ``locals`` defaults to ``me`` (spec 2.2)."""
        canonical = c.canonical_local_domain()
        if not canonical:
            raise ValueError("neither control/locals nor control/me exists")
        return cls.build(
            envnoathost=c.envnoathost,
            percenthack=sorted(c.percenthack),
            locals=c.locals or (canonical,),
            virtualdomains=c.virtualdomains,
        )


@dataclass(frozen=True, slots=True)
class Local:
    """Delivered by ``local`` in ``namespace``; ``original`` is the address before SEND-13."""

    address: str
    namespace: str
    original: str


@dataclass(frozen=True, slots=True)
class Remote:
    address: str


Route = Local | Remote


def _percenthack(address: str, domains: frozenset[str]) -> str:
    """SEND-11: while the domain is listed and the local part has ``%``, use its last ``%``."""
    while True:
        local, domain = split_address(address)
        if domain.lower() not in domains or "%" not in local:
            return address
        address = local[: local.rindex("%")] + "@" + local[local.rindex("%") + 1 :]


def _virtual_lookup(address: str, domain: str, rules: RoutingRules) -> tuple[str, str] | None:
    """The first of keys 1 and 2 of SEND-13 present in ``virtualdomains``."""
    table = {key.lower(): (key, prepend) for key, prepend in reversed(rules.virtualdomains)}
    for key in (address.lower(), domain):
        if key in table:
            return table[key]
    return None


def _virtual_suffix(domain: str, rules: RoutingRules) -> tuple[str, str] | None:
    """Keys 3 and 4 of SEND-13: suffixes from a ``.``, longest first, then the catch-all."""
    table = {key.lower(): (key, prepend) for key, prepend in reversed(rules.virtualdomains)}
    for i, ch in enumerate(domain):
        if ch == "." and domain[i:] in table:
            return table[domain[i:]]
    return table.get("")


def classify(address: str, rules: RoutingRules, directory_domains: Container[str]) -> Route:
    """Route one envelope recipient (SEND-10..SEND-16)."""
    if "@" not in address:
        address = f"{address}@{rules.envnoathost}"  # SEND-10
    address = _percenthack(address, rules.percenthack)  # SEND-11
    local, domain = split_address(address)
    domain_lc = domain.lower()
    if domain_lc in {d.lower() for d in rules.locals}:  # SEND-12
        return Local(address, rules.canonical_domain, address)
    match = _virtual_lookup(address, domain_lc, rules)  # SEND-13 keys 1, 2
    if match is None:
        if domain_lc in directory_domains:  # SEND-16
            return Local(address, domain_lc, address)
        match = _virtual_suffix(domain_lc, rules)  # SEND-13 keys 3, 4
    if match is None or not match[1]:
        return Remote(address)
    rewritten = f"{match[1]}-{local}@{rules.canonical_domain}"
    return Local(rewritten, rules.canonical_domain, address)


def is_hosted(domain: str, rules: RoutingRules, directory_domains: Container[str]) -> bool:
    """SEND-17: an address in ``domain`` can be classified local (for SMTPD-42's default)."""
    probe = classify(f"postmaster@{domain}", rules, directory_domains)
    return isinstance(probe, Local)
