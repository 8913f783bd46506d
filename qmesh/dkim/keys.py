"""One DKIM private key: read from its file, made by ``qmesh dkim keygen``, and its TXT record.

Accepted files: an RSA key in PEM (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 ``PRIVATE KEY``, as
OpenDKIM's and the qmail DKIM patch's tools write them), an Ed25519 key in PKCS#8 PEM, or an
Ed25519 key as the base64 of its 32-byte seed (dkimpy's and Rspamd's form; a 64-byte
seed-and-public-key is taken too). RSA keys shorter than 1024 bits are refused (RFC 8301
section 3.2); keygen makes 2048-bit RSA (RFC 8301 recommends at least 2048) and Ed25519
(RFC 8463). Anything else is :class:`KeyFileError` with a reason that names no key material.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

from Crypto.PublicKey import ECC, RSA

Algorithm = Literal["rsa", "ed25519"]
MIN_RSA_BITS = 1024
RSA_BITS = 2048
MAX_KEY_FILE = 64 * 1024
SELECTOR = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class KeyFileError(ValueError):
    """A key file that cannot be used; the text says why."""


@dataclass(frozen=True, slots=True)
class PrivateKey:
    algorithm: Algorithm
    private: bytes  # what dkimpy signs with: PKCS#1 PEM (rsa) or base64 seed (ed25519)
    public: str  # the p= value of the TXT record
    bits: int

    @property
    def signature_algorithm(self) -> bytes:
        return b"rsa-sha256" if self.algorithm == "rsa" else b"ed25519-sha256"

    def record(self) -> str:
        """The TXT record's value (RFC 6376 section 3.6.1, RFC 8463 section 4)."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public}"


def valid_selector(selector: str) -> bool:
    return len(selector) <= 253 and selector != "selector" and bool(SELECTOR.match(selector))


def parse_key(data: bytes) -> PrivateKey:
    """The key in ``data``; :class:`KeyFileError` if it is not one we can sign with."""
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError("key file too large")
    text = data.strip()
    if not text:
        raise KeyFileError("key file is empty")
    if text.startswith(b"-----BEGIN"):
        return _pem(text)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise KeyFileError("neither PEM nor a base64 Ed25519 seed") from err
    if len(raw) not in (32, 64):
        raise KeyFileError("a base64 Ed25519 key must hold 32 or 64 bytes")
    return _ed25519(raw[:32])


def _pem(text: bytes) -> PrivateKey:
    try:
        rsa = RSA.import_key(text)
    except (ValueError, IndexError, TypeError):
        pass
    else:
        if not rsa.has_private():
            raise KeyFileError("a public key, not a private key")
        bits = rsa.size_in_bits()
        if bits < MIN_RSA_BITS:
            raise KeyFileError(f"RSA key of {bits} bits; at least {MIN_RSA_BITS} are needed")
        public = base64.b64encode(rsa.public_key().export_key(format="DER")).decode()
        return PrivateKey("rsa", rsa.export_key(format="PEM", pkcs=1), public, bits)
    try:
        ecc = ECC.import_key(text)
    except (ValueError, IndexError, TypeError) as err:
        raise KeyFileError("PEM that holds no RSA or Ed25519 private key") from err
    if ecc.curve.lower() != "ed25519":
        raise KeyFileError(f"{ecc.curve} keys cannot sign DKIM")
    if not ecc.has_private():
        raise KeyFileError("a public key, not a private key")
    return _ed25519(bytes(ecc.seed))


def _ed25519(seed: bytes) -> PrivateKey:
    key = ECC.construct(curve="Ed25519", seed=seed)
    public = key.public_key().export_key(format="raw")
    return PrivateKey(
        "ed25519", base64.b64encode(seed), base64.b64encode(bytes(public)).decode(), 256
    )


def generate(algorithm: Algorithm) -> bytes:
    """A new key file's content: PKCS#1 PEM for RSA-2048, the base64 seed for Ed25519."""
    if algorithm == "rsa":
        return bytes(RSA.generate(RSA_BITS).export_key(format="PEM", pkcs=1)) + b"\n"
    return base64.b64encode(bytes(ECC.generate(curve="Ed25519").seed)) + b"\n"


def zone_line(selector: str, domain: str, key: PrivateKey) -> str:
    """The record as a zone-file line, its value in strings of at most 255 characters."""
    value = key.record()
    parts = [value[i : i + 255] for i in range(0, len(value), 255)]
    strings = " ".join(f'"{p}"' for p in parts)
    return f"{selector}._domainkey.{domain}. IN TXT ( {strings} )"
