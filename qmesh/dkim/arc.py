"""ARC sealing of mail that this system forwards (RFC 8617). Pure; callers run it in a thread.

Which messages are sealed (:func:`decide`): those that came in through our own door and were
checked there, then forwarded by this system. Two marks say so, both in the header:

- an ``Authentication-Results:`` field with our authserv-id (smtpd writes it, and removes any
  incoming field claiming that id, RFC 8601 section 5); its results become the
  ``ARC-Authentication-Results`` of the new set;
- above that field, a ``Delivered-To:`` line: local writes ``Delivered-To: box@domain`` on
  top of every ``.qmail`` forward (LOCAL-23), the list service ``Delivered-To: mailing list
  list@domain`` on top of every post. The topmost one names the forwarding address; a
  ``Delivered-To:`` below our ``Authentication-Results:`` came from outside and counts for
  nothing.

The domain of that address seals, with its active RSA selector (RFC 8617 defines only
``rsa-sha256``), when ``domainkeys/`` holds one; otherwise the message goes out without a seal.

The chain (:func:`chain_status`): with no ARC fields, the new set is ``i=1; cv=none``. With
sets ``1..n``, the new one is ``i=n+1``, and ``cv=pass`` only when the sets are complete (one
of each field per instance, no gap, no set beyond 50, no earlier ``cv=fail``) and our
``Authentication-Results:`` says ``arc=pass``; anything else is ``cv=fail`` (section 5.1.1).
ARC fields none of which has a readable instance, or a chain already at instance 50, cannot
be extended: no seal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import compat32
from typing import Literal

import authres
import authres.core
import dkim

from qmesh.dkim.keyring import Selector
from qmesh.dkim.sign import DOMAIN, SIGNED, header_block

ChainStatus = Literal["none", "pass", "fail"]
ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
MAX_INSTANCE = 50  # RFC 8617 section 4.2.1
INSTANCE = re.compile(r"[\s;]?i\s*=\s*(\d+)", re.IGNORECASE)  # as dkimpy reads it
CV = re.compile(r"(?:^|[\s;])cv\s*=\s*([a-z]+)", re.IGNORECASE)
MAX_FIELDS = 1000  # header fields looked at


class SealError(ValueError):
    """dkimpy refused to seal; the message goes out without a seal."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Seal with ``selector`` (``None``: no seal, ``reason`` says why, for metrics)."""

    reason: str  # sealed, not_checked, not_forwarded, no_key, unreadable_chain, chain_too_long
    selector: Selector | None = None
    domain: str = ""
    cv: ChainStatus = "none"
    instance: int = 0


def fields(message: bytes) -> list[tuple[str, str]]:
    """The header fields (lower-case name, unfolded value), in order; at most MAX_FIELDS."""
    parsed = message_from_bytes(header_block(message), policy=compat32)
    out: list[tuple[str, str]] = []
    for name, value in parsed.items()[:MAX_FIELDS]:
        text = str(value) if not isinstance(value, str) else value
        out.append((name.lower(), re.sub(r"\r?\n[ \t]", " ", text).strip()))
    return out


def authserv_id(value: str) -> str:
    """The authserv-id an ``Authentication-Results`` value begins with (RFC 8601 2.2)."""
    head = re.sub(r"\([^()]*\)", " ", value.split(";", 1)[0])  # comments, one level
    words = head.split()
    return words[0].lower() if words else ""


def ours(values: Sequence[str], srv_id: str) -> list[authres.AuthenticationResultsHeader]:
    """The parseable ``Authentication-Results`` values that carry ``srv_id``."""
    found = []
    for value in values:
        if authserv_id(value) != srv_id.lower():
            continue
        try:
            found.append(authres.AuthenticationResultsHeader.parse_value(value))
        except (authres.core.SyntaxError, ValueError, IndexError, TypeError):
            continue
    return found


def forwarder(headers: Sequence[tuple[str, str]], srv_id: str) -> str | None:
    """The domain of the topmost ``Delivered-To:`` above our ``Authentication-Results:``."""
    for name, value in headers:
        if name == "authentication-results" and authserv_id(value) == srv_id.lower():
            return None
        if name == "delivered-to":
            words = value.split()
            address = words[-1].strip("<>") if words else ""
            domain = address.rpartition("@")[2].lower().rstrip(".")
            if "@" in address and DOMAIN.match(domain):
                return domain
            return None
    return None


def instances(headers: Sequence[tuple[str, str]]) -> tuple[dict[int, list[tuple[str, str]]], bool]:
    """The ARC fields by instance, and whether some ARC field has no readable instance."""
    sets: dict[int, list[tuple[str, str]]] = {}
    unreadable = False
    for name, value in headers:
        if name not in ARC_FIELDS:
            continue
        m = INSTANCE.search(value)
        if m is None or len(m.group(1)) > 6:
            unreadable = True
            continue
        sets.setdefault(int(m.group(1)), []).append((name, value))
    return sets, unreadable


def chain_status(
    sets: dict[int, list[tuple[str, str]]], claimed: Sequence[str], unreadable: bool = False
) -> ChainStatus:
    """Section 5.1.1: the cv of the new set from the sets present and what the door found."""
    if not sets:
        return "none"
    if unreadable or sorted(sets) != list(range(1, len(sets) + 1)):
        return "fail"
    for instance, found in sets.items():
        names = sorted(name for name, _ in found)
        if names != sorted(ARC_FIELDS):
            return "fail"
        seal = next(value for name, value in found if name == "arc-seal")
        cv = CV.search(seal)
        wanted = "none" if instance == 1 else "pass"
        if cv is None or cv.group(1).lower() != wanted:
            return "fail"
    return "pass" if list(claimed) == ["pass"] else "fail"


def rsa_selector(selectors: Sequence[Selector]) -> Selector | None:
    return next((s for s in selectors if s.key.algorithm == "rsa"), None)


def decide(
    headers: Sequence[tuple[str, str]], srv_id: str, signers: Callable[[str], list[Selector]]
) -> Decision:
    """Whether and how to seal a message with ``headers`` (see the module's text)."""
    checked = ours([v for n, v in headers if n == "authentication-results"], srv_id)
    if not srv_id or not checked:
        return Decision("not_checked")
    domain = forwarder(headers, srv_id)
    if domain is None:
        return Decision("not_forwarded")
    selector = rsa_selector(signers(domain))
    if selector is None:
        return Decision("no_key", domain=domain)
    sets, unreadable = instances(headers)
    if unreadable and not sets:
        return Decision("unreadable_chain", domain=domain)
    if sets and max(sets) >= MAX_INSTANCE:
        return Decision("chain_too_long", domain=domain)
    claimed = [str(r.result).lower() for h in checked for r in h.results if r.method == "arc"]
    cv = chain_status(sets, claimed, unreadable)
    return Decision("sealed", selector, domain, cv, max(sets, default=0) + 1)


def _results_field(values: Sequence[str], srv_id: str, cv: ChainStatus) -> bytes:
    """One ``Authentication-Results:`` with our results and ``arc=<cv>`` as we found it."""
    results = [r for h in ours(values, srv_id) for r in h.results if r.method != "arc"]
    results.append(authres.core.AuthenticationResult(method="arc", result=cv))
    header = authres.AuthenticationResultsHeader(authserv_id=srv_id, results=results)
    return str(header).encode("utf-8") + b"\n"


def _without_our_results(message: bytes, srv_id: str) -> bytes:
    """``message`` without the ``Authentication-Results`` fields that carry ``srv_id``."""
    head = header_block(message)
    lines = head.splitlines(keepends=True)
    out: list[bytes] = []
    skipping = False
    for line in lines:
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = False
        name, colon, value = line.partition(b":")
        ours_field = colon and name.strip().lower() == b"authentication-results"
        if ours_field and authserv_id(value.decode("utf-8", "replace")) == srv_id.lower():
            skipping = True
            continue
        out.append(line)
    return b"".join(out) + message[len(head) :]


def seal(message: bytes, decision: Decision, srv_id: str, timestamp: int | None = None) -> bytes:
    """The three fields of the new ARC set, to be put before ``message`` (lines end in LF).

    dkimpy takes the cv from the ``arc=`` result of our ``Authentication-Results``; it is given
    a copy whose field says what :func:`decide` found (that field is not signed by the set).
    """
    s = decision.selector
    if s is None:
        return b""
    values = [v for n, v in fields(message) if n == "authentication-results"]
    copy = _results_field(values, srv_id, decision.cv) + _without_our_results(message, srv_id)
    present = {name for name, _ in fields(message)}
    include = [n.encode() for n in SIGNED if n in present or n == "from"]
    include += [b"dkim-signature"] if "dkim-signature" in present else []
    try:
        made = dkim.arc_sign(
            copy,
            s.selector.encode(),
            s.domain.encode(),
            s.key.private,
            srv_id.encode(),
            include_headers=include,
            timestamp=timestamp,
            linesep=b"\n",
        )
    except (dkim.DKIMException, ValueError, TypeError, IndexError, KeyError) as err:
        raise SealError(f"{s.selector}._domainkey.{s.domain}: {err}") from err
    if len(made) != 3:
        raise SealError("dkimpy made no ARC set")
    return b"".join(made)
