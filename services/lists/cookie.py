"""Confirmation cookies, as ezmlm-manage's: an action, an expiry and an HMAC in the address.

``LIST-sc.<expiry>.<mac>-box=host@DOMAIN`` confirms a subscription of ``box@host``. The MAC
(HMAC-SHA256, the list's cookie key) covers the action, the list address, the target and the
expiry, so a cookie works for one list, one address and one action until it expires; only
whoever receives the confirmation request at the target address learns it, so nobody can
subscribe or unsubscribe a third party. Pure: no clock, no key store.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from hashlib import sha256

from qmesh.lists.address import address_problem, verp_decode, verp_encode

LIFETIME = 1_000_000  # seconds, ezmlm's cookie lifetime (about 11.5 days)
MAC_HEX = 20
ACTIONS = ("sc", "uc", "dc", "du")  # subscribe, unsubscribe, digest subscribe/unsubscribe


def mac(key: bytes, action: str, list_address: str, target: str, expiry: int) -> str:
    data = "\0".join((action, list_address.lower(), target.lower(), str(expiry)))
    return hmac.new(key, data.encode("utf-8", "surrogateescape"), sha256).hexdigest()[:MAC_HEX]


def confirm_ext(key: bytes, action: str, list_address: str, target: str, now: float) -> str:
    """The ext of the confirmation address for ``target`` (what follows ``LIST-``)."""
    expiry = int(now) + LIFETIME
    return (
        f"{action}.{expiry}.{mac(key, action, list_address, target, expiry)}-{verp_encode(target)}"
    )


@dataclass(frozen=True, slots=True)
class Checked:
    target: str | None
    problem: str | None


def check(key: bytes, action: str, list_address: str, rest: str, now: float) -> Checked:
    """``rest`` is what follows ``<action>.`` in the ext: ``<expiry>.<mac>-box=host``."""
    head, dash, verp = rest.partition("-")
    expiry_text, dot, given = head.partition(".")
    target = verp_decode(verp) if dash else None
    if not dot or not expiry_text.isdigit() or len(expiry_text) > 12 or target is None:
        return Checked(None, "the confirmation address is malformed")
    if address_problem(target) is not None:
        return Checked(None, "the confirmation address is malformed")
    expiry = int(expiry_text)
    wanted = mac(key, action, list_address, target, expiry)
    if not hmac.compare_digest(wanted, given.lower()):
        return Checked(None, "the confirmation code is not valid for this list and address")
    if expiry < now:
        return Checked(None, "the confirmation code has expired")
    return Checked(target, None)


def moderation_mac(key: bytes, list_address: str, held_id: str) -> str:
    return mac(key, "mod", list_address, held_id, 0)
