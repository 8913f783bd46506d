"""DMARC (RFC 7489): the From domain's policy, alignment, and the result.

The record is ``_dmarc.<From domain>``, else ``_dmarc.<organizational domain>`` (section 6.6.3),
the organizational domain taken from the public-suffix list (section 3.2; a suffix the list
does not know counts as one label, its default rule ``*``). Exactly one ``v=DMARC1`` record
with a valid ``p=`` counts; anything else is no policy (``none``). DMARC passes when an SPF
``pass`` or a DKIM ``pass`` is aligned with the From domain: relaxed (the same organizational
domain) unless ``aspf``/``adkim`` say ``s`` (the same domain). ``sp=`` applies to a subdomain
that has no record of its own. A DNS failure is ``temperror``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from publicsuffix2 import PublicSuffixList

from qmesh.auth.dkim import DkimResult
from qmesh.auth.lookup import DnsTemporary, TxtLookup
from qmesh.auth.spf import SpfResult

POLICIES = ("none", "quarantine", "reject")


@cache
def _suffixes() -> PublicSuffixList:
    """The list, read on first use (0.1 s), not when a service starts."""
    return PublicSuffixList()


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: str  # pass, fail, none, temperror, permerror
    domain: str  # the From domain
    policy: str | None = None  # the policy that applies: none, quarantine, reject
    reason: str = ""
    pct: int = 100  # the share of failing mail the policy asks to apply to (section 6.3)


def organizational_domain(domain: str) -> str:
    name = domain.lower().rstrip(".")
    psl = _suffixes()
    sld = psl.get_sld(name)
    if not sld or sld == psl.get_tld(name):  # an unknown suffix: the default rule "*"
        return ".".join(name.split(".")[-2:])
    return str(sld)


def _aligned(domain: str, other: str, mode: str) -> bool:
    other = other.lower().rstrip(".")
    if mode == "s":
        return other == domain
    return organizational_domain(other) == organizational_domain(domain)


def _record(texts: Sequence[str]) -> dict[str, str] | None:
    found = [t for t in texts if t.replace(" ", "").startswith("v=DMARC1")]
    if len(found) != 1:
        return None
    tags: dict[str, str] = {}
    for part in found[0].split(";"):
        key, eq, value = part.partition("=")
        if eq:
            tags.setdefault(key.strip().lower(), value.strip().lower())
    if tags.get("v") != "dmarc1" or tags.get("p") not in POLICIES:
        return None
    return tags


def _published(domain: str, lookup: TxtLookup) -> tuple[dict[str, str], str] | None:
    """The record that governs ``domain`` and the policy it applies to it (``sp=`` for a
    subdomain without a record of its own), or ``None``; raises :class:`DnsTemporary`."""
    tags = _record(lookup(f"_dmarc.{domain}"))
    if tags is not None:
        return tags, tags["p"]
    org = organizational_domain(domain)
    if org == domain:
        return None
    tags = _record(lookup(f"_dmarc.{org}"))
    if tags is None:
        return None
    policy = tags.get("sp", tags["p"])
    return tags, policy if policy in POLICIES else tags["p"]


def published_policy(domain: str, lookup: TxtLookup) -> str | None:
    """What ``domain`` asks receivers to do with mail that fails DMARC (``none``,
    ``quarantine``, ``reject``), or ``None`` without a policy; raises :class:`DnsTemporary`."""
    found = _published(domain.lower().rstrip("."), lookup)
    return found[1] if found else None


def check_dmarc(
    from_domain: str, spf: SpfResult | None, dkim: Sequence[DkimResult], lookup: TxtLookup
) -> DmarcResult:
    domain = from_domain.lower().rstrip(".")
    if not domain:
        return DmarcResult("permerror", "", reason="no single From domain")
    try:
        found = _published(domain, lookup)
    except DnsTemporary as err:
        return DmarcResult("temperror", domain, reason=f"DNS: {err}")
    if found is None:
        return DmarcResult("none", domain)
    tags, policy = found
    spf_ok = (
        spf is not None
        and spf.result == "pass"
        and _aligned(domain, spf.domain, tags.get("aspf", "r"))
    )
    dkim_ok = any(
        r.result == "pass" and _aligned(domain, r.domain, tags.get("adkim", "r")) for r in dkim
    )
    if spf_ok or dkim_ok:
        return DmarcResult("pass", domain, policy, "aligned " + ("DKIM" if dkim_ok else "SPF"))
    return DmarcResult("fail", domain, policy, "no aligned SPF or DKIM pass", _pct(tags))


def _pct(tags: dict[str, str]) -> int:
    """``pct=`` (section 6.3): 0 to 100, default and anything unreadable 100."""
    text = tags.get("pct", "100")
    return min(100, int(text)) if text.isdigit() else 100
