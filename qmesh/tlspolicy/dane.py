"""DANE for SMTP (RFC 7672): TLSA records and whether a server's certificate matches them.

Only DNSSEC-validated TLSA records count (section 2.2): the resolver says so with the AD bit,
and qmesh trusts that bit from the resolvers named in ``QMESH_DNS_SERVERS`` only (section
2.1.1: a validating resolver on a trusted path). Usable records (section 3.1.3) are DANE-EE(3)
with selector 0 (whole certificate) or 1 (SubjectPublicKeyInfo) and matching type 0, 1
(SHA-256) or 2 (SHA-512). DANE-TA(2) needs the server's chain, which this runtime does not
expose; such records are treated as unusable, and with no usable record TLS is still required
but not authenticated (section 2.2). PKIX-TA/PKIX-EE (0, 1) are unusable for SMTP (3.1.3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from Crypto.PublicKey import ECC, RSA


@dataclass(frozen=True, slots=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        return self.usage == 3 and self.selector in (0, 1) and self.mtype in (0, 1, 2)


def spki(cert_der: bytes) -> bytes | None:
    """The certificate's SubjectPublicKeyInfo (DER), or None if it cannot be read."""
    for kind in (RSA, ECC):
        try:
            key = kind.import_key(cert_der)
        except (ValueError, IndexError, TypeError):
            continue
        return bytes(key.public_key().export_key(format="DER"))
    return None


def _digest(data: bytes, mtype: int) -> bytes:
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return data


def matches(records: Iterable[Tlsa], cert_der: bytes) -> bool:
    """Section 3.1.1: one usable DANE-EE record matches the server's certificate."""
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
