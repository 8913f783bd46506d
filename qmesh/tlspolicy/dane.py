"""DANE for SMTP (RFC 7672): TLSA records and whether a server's certificate matches them.

Only DNSSEC-validated TLSA records count (section 2.2): the resolver says so with the AD bit,
and qmesh trusts that bit from the resolvers named in ``QMESH_DNS_SERVERS`` only (section
2.1.1: a validating resolver on a trusted path). Usable records (section 3.1.3) are DANE-EE(3)
and DANE-TA(2) with selector 0 (whole certificate) or 1 (SubjectPublicKeyInfo) and matching
type 0, 1 (SHA-256) or 2 (SHA-512); with no usable record TLS is still required but not
authenticated (section 2.2). PKIX-TA/PKIX-EE (0, 1) are unusable for SMTP (3.1.3).

:func:`authenticates` (sections 3.1.1, 3.1.2, 3.2): a DANE-EE record matches the server's own
certificate, names are not checked; a DANE-TA record matches a certificate the server sent
after its own (the trust anchor, which section 3.1.2 requires the server to send), the chain
from the server's certificate up to it is signed link by link by CAs
(:mod:`qmesh.tlspolicy.x509`), and the server's certificate names the MX host.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qmesh.tlspolicy.x509 import (
    MAX_CHAIN,
    CertError,
    name_matches,
    parse,
    path_to,
    public_key_info,
)


@dataclass(frozen=True, slots=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        return self.usage in (2, 3) and self.selector in (0, 1) and self.mtype in (0, 1, 2)


def spki(cert_der: bytes) -> bytes | None:
    """The certificate's SubjectPublicKeyInfo (DER), or None if it cannot be read."""
    return public_key_info(cert_der)


def _digest(data: bytes, mtype: int) -> bytes:
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return data


def matches(records: Iterable[Tlsa], cert_der: bytes) -> bool:
    """One usable record matches ``cert_der`` (its usage is not looked at here)."""
    public: bytes | None = None
    for r in records:
        if not r.usable:
            continue
        if r.selector == 0:
            subject = cert_der
        else:
            public = public if public is not None else spki(cert_der)
            if public is None:
                continue
            subject = public
        if _digest(subject, r.mtype) == r.data:
            return True
    return False


def authenticates(records: Sequence[Tlsa], chain: Sequence[bytes], names: Sequence[str]) -> bool:
    """The server that sent ``chain`` (its own certificate first) is the one the TLSA records
    name: by a DANE-EE record, or by a DANE-TA record and a valid chain for one of ``names``."""
    if not chain:
        return False
    if matches([r for r in records if r.usage == 3], chain[0]):
        return True
    anchors = [r for r in records if r.usage == 2 and r.usable]
    if not anchors:
        return False
    try:
        parsed = [parse(der) for der in chain[:MAX_CHAIN]]
    except (CertError, UnicodeDecodeError):
        return False
    if not any(name_matches(parsed[0], name) for name in names):
        return False
    return any(
        matches(anchors, parsed[i].der) and path_to(parsed, i) for i in range(1, len(parsed))
    )
