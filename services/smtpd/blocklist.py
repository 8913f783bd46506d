"""DNS blocklists at the door, as rblsmtpd (defences #12). Pure: zones, query names, verdicts.

The control ``dnsbl`` names one zone per line, ``zone`` or ``zone:text``; a leading ``!``
marks a zone whose listing is permanent (rblsmtpd's ``-b``: ``553``), otherwise it is ``451``
(rblsmtpd's default) so a wrongly listed sender retries. The text of the refusal is the
line's own, else the zone's TXT record for the address, else a standard sentence. A client is
listed when the zone has an ``A`` record in ``127.0.0.0/8`` for its reversed address (RFC
5782); ``127.255.255.0/24`` answers are the list's error codes (a refused public resolver,
for one) and list nobody.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from qmesh.address import client_address
from qmesh.control import ControlError
from services.smtpd.verdict import Verdict

MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class Zone:
    name: str  # lower case, no final dot
    text: str = ""  # the line's own text; empty: the zone's TXT record
    permanent: bool = False


def parse_zones(entries: tuple[str, ...]) -> tuple[Zone, ...]:
    """The ``dnsbl`` lines; a malformed zone stops startup, naming the line."""
    zones = []
    for line, raw in enumerate(entries, 1):
        entry = raw.strip()
        permanent = entry.startswith("!")
        name, _, text = entry.removeprefix("!").partition(":")
        name = name.strip().rstrip(".").lower()
        labels = name.split(".")
        if (
            len(labels) < 2
            or len(name) > 200
            or not all(
                label
                and len(label) <= 63
                and all(c.isalnum() or c in "-_" for c in label)
                and label.isascii()
                for label in labels
            )
        ):
            raise ControlError("dnsbl", f"not a DNS zone: {name!r}", line)
        zones.append(Zone(name, clean_text(text), permanent))
    return tuple(zones)


def query_name(ip: str, zone: Zone) -> str | None:
    """RFC 5782 section 2.1 (IPv4) and 2.4 (IPv6 nibbles); ``None`` for a non-IP client."""
    address = client_address(ip)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        reversed_ = ".".join(reversed(str(address).split(".")))
    else:
        reversed_ = ".".join(reversed(address.exploded.replace(":", "")))
    return f"{reversed_}.{zone.name}"


def listed(addresses: list[str]) -> bool:
    """An ``A`` answer lists the client when one address is in 127/8 but not 127.255.255/24."""
    for text in addresses:
        try:
            address = ipaddress.IPv4Address(text)
        except ValueError:
            continue
        if address in _LOOPBACK and address not in _ERRORS:
            return True
    return False


_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_ERRORS = ipaddress.IPv4Network("127.255.255.0/24")


def clean_text(text: str) -> str:
    """A text that may go into a reply line: printable ASCII, one line, bounded."""
    kept = "".join(c if " " <= c <= "~" else " " for c in text)
    return " ".join(kept.split())[:MAX_TEXT]


def refusal(zone: Zone, txt: str) -> Verdict:
    """rblsmtpd's answer: the line's text, else the list's TXT, else a sentence of ours."""
    text = zone.text or clean_text(txt) or f"your address is listed by {zone.name}"
    if zone.permanent:
        return Verdict(553, "5.7.1", text)
    return Verdict(451, "4.7.1", text)
