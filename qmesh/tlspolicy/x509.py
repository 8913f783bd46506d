"""Just enough X.509 for DANE-TA (RFC 7672 section 3.1.2): a chain's signatures and the
server's names. Pure; anything it cannot read is :class:`CertError`, never a crash.

A certificate is read with a small DER walker (RFC 5280 section 4.1): the signed part
(``tbsCertificate``) as sent, the signature algorithm and value, issuer and subject as DER, the
public key, ``basicConstraints`` and the DNS names of ``subjectAltName``. Signatures are checked
with pycryptodome: RSA PKCS#1 v1.5, ECDSA and Ed25519 with SHA-256/384/512 (SHA-1 and RSA-PSS
are refused). Validity dates are not looked at: DANE authenticates by the TLSA record, and the
operator of the TLSA record chose the trust anchor.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from Crypto.Hash import SHA256, SHA384, SHA512
from Crypto.PublicKey import ECC, RSA
from Crypto.Signature import DSS, eddsa, pkcs1_15

MAX_CHAIN = 10
SEQUENCE, BOOLEAN, OID, OCTETS, BITS = 0x30, 0x01, 0x06, 0x04, 0x03
HASHES = {"sha256": SHA256, "sha384": SHA384, "sha512": SHA512}
ALGORITHMS = {  # DER of the OID -> (key kind, hash)
    bytes.fromhex("2a864886f70d01010b"): ("rsa", "sha256"),
    bytes.fromhex("2a864886f70d01010c"): ("rsa", "sha384"),
    bytes.fromhex("2a864886f70d01010d"): ("rsa", "sha512"),
    bytes.fromhex("2a8648ce3d040302"): ("ecdsa", "sha256"),
    bytes.fromhex("2a8648ce3d040303"): ("ecdsa", "sha384"),
    bytes.fromhex("2a8648ce3d040304"): ("ecdsa", "sha512"),
    bytes.fromhex("2b6570"): ("ed25519", ""),
}
BASIC_CONSTRAINTS = bytes.fromhex("551d13")
SUBJECT_ALT_NAME = bytes.fromhex("551d11")


class CertError(ValueError):
    """A certificate that cannot be read."""


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes
    whole: bytes  # tag, length and value as sent


def _items(data: bytes) -> Iterator[Tlv]:
    """The DER elements one after another in ``data`` (definite lengths only)."""
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise CertError("truncated DER")
        tag, first = data[pos], data[pos + 1]
        head = 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4 or pos + 2 + count > len(data):
                raise CertError("bad DER length")
            length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
            head += count
        end = pos + head + length
        if end > len(data):
            raise CertError("DER element longer than its container")
        yield Tlv(tag, data[pos + head : end], data[pos:end])
        pos = end


def _one(data: bytes, tag: int) -> Tlv:
    found = list(_items(data))
    if len(found) != 1 or found[0].tag != tag:
        raise CertError(f"expected one element {tag:#x}")
    return found[0]


@dataclass(frozen=True, slots=True)
class Cert:
    der: bytes
    tbs: bytes  # tbsCertificate as sent: what the issuer signed
    algorithm: bytes  # the signature algorithm's OID (DER value)
    signature: bytes
    issuer: bytes
    subject: bytes
    is_ca: bool
    dns_names: tuple[str, ...]


def parse(der: bytes) -> Cert:
    outer = list(_items(_one(der, SEQUENCE).value))
    if len(outer) != 3 or outer[0].tag != SEQUENCE or outer[2].tag != BITS:
        raise CertError("not a certificate")
    tbs = list(_items(outer[0].value))
    if tbs and tbs[0].tag == 0xA0:  # [0] version
        tbs = tbs[1:]
    if len(tbs) < 6:
        raise CertError("short tbsCertificate")
    algorithm = list(_items(outer[1].value))
    if not algorithm or algorithm[0].tag != OID:
        raise CertError("no signature algorithm")
    bits = outer[2].value
    if not bits or bits[0] != 0:
        raise CertError("signature with unused bits")
    is_ca = False
    names: tuple[str, ...] = ()
    for ext in _extensions(tbs[6:]):
        parts = list(_items(ext.value))
        if not parts or parts[0].tag != OID or parts[-1].tag != OCTETS:
            raise CertError("bad extension")
        if parts[0].value == BASIC_CONSTRAINTS:
            inner = list(_items(_one(parts[-1].value, SEQUENCE).value))
            is_ca = bool(inner and inner[0].tag == BOOLEAN and inner[0].value not in (b"", b"\0"))
        elif parts[0].value == SUBJECT_ALT_NAME:
            general = _items(_one(parts[-1].value, SEQUENCE).value)
            names = tuple(g.value.decode("ascii").lower() for g in general if g.tag == 0x82)
    return Cert(
        der=der,
        tbs=outer[0].whole,
        algorithm=algorithm[0].value,
        signature=bits[1:],
        issuer=tbs[2].whole,
        subject=tbs[4].whole,
        is_ca=is_ca,
        dns_names=names,
    )


def _extensions(rest: list[Tlv]) -> Iterator[Tlv]:
    for item in rest:
        if item.tag == 0xA3:  # [3] extensions
            yield from _items(_one(item.value, SEQUENCE).value)


def signed_by(child: Cert, parent: Cert) -> bool:
    """``parent`` issued ``child``: names chain, and its key checks the signature."""
    if child.issuer != parent.subject:
        return False
    kind, hash_name = ALGORITHMS.get(child.algorithm, ("", ""))
    try:
        if kind == "rsa":
            rsa_key = RSA.import_key(parent.der)
            pkcs1_15.new(rsa_key).verify(HASHES[hash_name].new(child.tbs), child.signature)
            return True
        ec_key = ECC.import_key(parent.der)
        if kind == "ecdsa" and not ec_key.curve.startswith("Ed"):
            verifier = DSS.new(ec_key, "fips-186-3", encoding="der")
            verifier.verify(HASHES[hash_name].new(child.tbs), child.signature)
            return True
        if kind == "ed25519" and ec_key.curve == "Ed25519":
            eddsa.new(ec_key, "rfc8032").verify(child.tbs, child.signature)
            return True
    except (ValueError, TypeError, IndexError, KeyError):
        return False
    return False


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
