"""Just enough X.509 for DANE-TA (RFC 7672 section 3.1.2): a chain's signatures and the
server's names, read with the ``cryptography`` package. Anything it cannot read is
:class:`CertError`, never a crash.

Signatures: RSA PKCS#1 v1.5, ECDSA and Ed25519 with SHA-256/384/512 (SHA-1 and RSA-PSS are
refused). Validity dates are not looked at: DANE authenticates by the TLSA record, and the
operator of the TLSA record chose the trust anchor.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_CHAIN = 10
HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


class CertError(ValueError):
    """A certificate that cannot be read."""


@dataclass(frozen=True, slots=True)
class Cert:
    der: bytes
    cert: x509.Certificate
    is_ca: bool
    dns_names: tuple[str, ...]


def parse(der: bytes) -> Cert:
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
    except ValueError as e:
        raise CertError(f"not a certificate: {e}") from None
    try:
        is_ca = extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        alt = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(n.lower() for n in alt.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return Cert(der=der, cert=cert, is_ca=is_ca, dns_names=names)


def public_key_info(der: bytes) -> bytes | None:
    """The certificate's SubjectPublicKeyInfo (DER), or None if it cannot be read."""
    try:
        key = x509.load_der_x509_certificate(der).public_key()
        return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, UnsupportedAlgorithm):
        return None


def signed_by(child: Cert, parent: Cert) -> bool:
    """``parent`` issued ``child``: names chain, and its key checks the signature."""
    try:
        algorithm = child.cert.signature_hash_algorithm
        pss = isinstance(child.cert.signature_algorithm_parameters, padding.PSS)
    except UnsupportedAlgorithm:
        return False
    if pss or not (algorithm is None or isinstance(algorithm, HASHES)):
        return False  # SHA-1, MD5, RSA-PSS
    try:
        child.cert.verify_directly_issued_by(parent.cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def name_matches(cert: Cert, name: str) -> bool:
    """RFC 6125 as RFC 7672 section 3.2.3 uses it: a DNS name, ``*`` for the leftmost label."""
    wanted = name.lower().rstrip(".")
    for pattern in cert.dns_names:
        pattern = pattern.rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            head, _, rest = wanted.partition(".")
            if head and rest == pattern[2:] and "." in rest:
                return True
    return False


def path_to(chain: list[Cert], anchor: int) -> bool:
    """``chain[0]`` leads to ``chain[anchor]`` through the certificates between, each issued by
    the next, every issuer a CA."""
    if not 0 < anchor < min(len(chain), MAX_CHAIN):
        return False
    for child, parent in itertools.pairwise(chain[: anchor + 1]):
        if not parent.is_ca or not signed_by(child, parent):
            return False
    return True
