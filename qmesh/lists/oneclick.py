"""RFC 8058 one-click unsubscribe tokens, shared by the lists service (which writes them into
``List-Unsubscribe``) and the admin service (which serves ``/unsubscribe/<token>``). Pure.

A token names the list and the subscriber, carries an expiry, and is signed like a
confirmation cookie (:mod:`services.lists.cookie`): HMAC-SHA256 with the lists' cookie key over
the action ``oc``, the list, the address and the expiry. It works for one address on one list
until it expires, and only whoever receives a message with it learns it.

``<list>.<address>.<expiry>.<mac>``, the list and the address in unpadded base64url.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from hashlib import sha256

from qmesh.lists.address import address_problem

ACTION = "oc"
LIFETIME = 365 * 86400  # a link in a message kept in a mailbox still works for a year
MAC_HEX = 32
MAX_TOKEN = 1200  # two addresses of 254 bytes in base64, an expiry and a MAC, with room


def _mac(key: bytes, list_address: str, address: str, expiry: int) -> str:
    data = "\0".join((ACTION, list_address.lower(), address.lower(), str(expiry)))
    return hmac.new(key, data.encode("utf-8", "surrogateescape"), sha256).hexdigest()[:MAC_HEX]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def _unb64(text: str) -> str | None:
    if not text or len(text) > 400 or not text.replace("-", "").replace("_", "").isalnum():
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def make(key: bytes, list_address: str, address: str, now: float) -> str:
    expiry = int(now) + LIFETIME
    mac = _mac(key, list_address, address, expiry)
    return f"{_b64(list_address)}.{_b64(address)}.{expiry}.{mac}"


@dataclass(frozen=True, slots=True)
class Checked:
    list_address: str | None = None
    address: str | None = None
    problem: str | None = None


def check(key: bytes, token: str, now: float) -> Checked:
    """The list and address of a valid token, or why it is refused."""
    bad = Checked(problem="This unsubscribe link is not valid (it may have been cut short).")
    if len(token) > MAX_TOKEN or not token.isascii():
        return bad
    parts = token.split(".")
    if len(parts) != 4:
        return bad
    list_address, address = _unb64(parts[0]), _unb64(parts[1])
    expiry_text, given = parts[2], parts[3]
    if list_address is None or address is None:
        return bad
    if not expiry_text.isdigit() or len(expiry_text) > 12:
        return bad
    if address_problem(list_address) is not None or address_problem(address) is not None:
        return bad
    expiry = int(expiry_text)
    if not hmac.compare_digest(_mac(key, list_address, address, expiry), given.lower()):
        return Checked(problem="This unsubscribe link is not valid for this list and address.")
    if expiry < now:
        return Checked(
            problem="This unsubscribe link has expired. To unsubscribe, send a message to "
            f"the list's unsubscribe address ({_unsubscribe_address(list_address)})."
        )
    return Checked(list_address, address)


def _unsubscribe_address(list_address: str) -> str:
    name, _, domain = list_address.rpartition("@")
    return f"{name}-unsubscribe@{domain}"


def url(base: str, token: str) -> str:
    """``<base>/unsubscribe/<token>``; ``base`` is the admin service's outside address."""
    return f"{base.rstrip('/')}/unsubscribe/{token}"
