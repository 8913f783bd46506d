"""How one connection is secured: opportunistic TLS, MTA-STS, or DANE (RFC 8461, RFC 7672).

Pure. :class:`TlsPlan` carries the TLS context to offer, the :class:`TlsDemand` a policy makes
(STARTTLS required, the certificate checked), and the (policy, mode) it is counted under.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from qmesh.tlspolicy.dane import Tlsa, authenticates
from services.remote.client import TlsDemand
from services.remote.tlsrpt import TLSA_INVALID


@dataclass(frozen=True, slots=True)
class TlsPlan:
    context: ssl.SSLContext | None
    demand: TlsDemand | None = None
    label: tuple[str, str] | None = None  # (policy, mode) for metrics
    degraded: str | None = None  # RFC 8460 result of a session that succeeds: tlsa-invalid


def dane_context() -> ssl.SSLContext:
    """DANE checks the certificate against TLSA records, not against CAs (RFC 7672 3.1.1)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def dane_check(mx: str, records: Sequence[Tlsa]) -> TlsDemand:
    """RFC 7672 section 2.2: TLS required; authenticated when a usable record exists."""
    usable = [r for r in records if r.usable]

    def check(chain: Sequence[bytes]) -> str | None:
        if not usable or authenticates(usable, chain, (mx,)):
            return None
        return f"the certificate of {mx} matches none of its TLSA records"

    return TlsDemand(f"DANE (TLSA records of {mx})", check)


def dane_plan(mx: str, records: Sequence[Tlsa]) -> TlsPlan:
    """DANE's plan; with no usable record the session counts as ``tlsa-invalid`` (RFC 8460)."""
    degraded = None if any(r.usable for r in records) else TLSA_INVALID
    return TlsPlan(dane_context(), dane_check(mx, records), ("dane", "enforce"), degraded)
