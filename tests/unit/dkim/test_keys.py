"""DKIM key files: what is read, what is refused, what keygen writes (RFC 6376 3.6.1, RFC 8463)."""

from __future__ import annotations

import base64

import pytest
from Crypto.PublicKey import ECC, RSA
from Crypto.Util.number import getPrime, inverse

from qmesh.dkim.keys import KeyFileError, generate, parse_key, valid_selector, zone_line
from tests import rfc8463


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_generated_keys_parse_back(algorithm) -> None:
    key = parse_key(generate(algorithm))
    assert key.algorithm == algorithm
    assert key.bits == (2048 if algorithm == "rsa" else 256)
    assert key.record().startswith(f"v=DKIM1; k={algorithm}; p=")


def test_rfc8463_seed_gives_the_published_public_key() -> None:
    """RFC 8463 A.1/A.2: the base64 seed file yields the p= of brisbane._domainkey."""
    key = parse_key(rfc8463.ED25519_SEED.encode() + b"\n")
    assert key.public == rfc8463.ED25519_PUBLIC
    assert key.record() == rfc8463.RECORDS[f"brisbane._domainkey.{rfc8463.DOMAIN}"]


def test_other_forms_are_read() -> None:
    rsa = RSA.generate(2048)
    pkcs8 = rsa.export_key(format="PEM", pkcs=8)
    assert parse_key(pkcs8).algorithm == "rsa"
    ed = ECC.generate(curve="Ed25519")
    assert parse_key(ed.export_key(format="PEM").encode()).algorithm == "ed25519"
    seed_and_public = bytes(ed.seed) + bytes(ed.public_key().export_key(format="raw"))
    assert parse_key(base64.b64encode(seed_and_public)).algorithm == "ed25519"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"not a key at all!", "neither PEM"),
        (base64.b64encode(b"x" * 31), "32 or 64 bytes"),
        (b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "PEM"),
        (b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 5000 + b"\n", "PEM"),
        (b"A" * 70000, "too large"),
        (RSA.generate(1024).public_key().export_key(), "public key"),
        (ECC.generate(curve="P-256").export_key(format="PEM").encode(), "cannot sign"),
        (ECC.generate(curve="Ed25519").public_key().export_key(format="PEM").encode(), "public"),
        (b"\x00\xff" * 40, "neither PEM"),
    ],
)
def test_malformed_keys_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(KeyFileError, match=reason):
        parse_key(data)


def test_short_rsa_keys_are_refused() -> None:
    """RFC 8301 section 3.2: keys shorter than 1024 bits are not used."""
    with pytest.raises(KeyFileError, match="at least 1024"):
        parse_key(_rsa(512))


def _rsa(bits: int) -> bytes:
    """An RSA key of ``bits`` (pycryptodome generates none under 1024), from two primes."""
    e = 65537
    while True:
        p, q = getPrime(bits // 2), getPrime(bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            break
    return bytes(RSA.construct((p * q, e, inverse(e, phi), p, q)).export_key())


@pytest.mark.parametrize(
    ("selector", "ok"),
    [
        ("s1", True),
        ("2026.q1", True),
        ("rsa202612", True),
        ("selector", False),
        ("", False),
        ("-a", False),
        ("a_b", False),
        ("a..b", False),
        ("UPPER", False),
        ("a" * 64, False),
        ("x/../y", False),
    ],
)
def test_selectors(selector: str, ok: bool) -> None:
    assert valid_selector(selector) is ok


def test_zone_line_splits_long_records() -> None:
    key = parse_key(generate("rsa"))
    line = zone_line("s1", "example.test", key)
    assert line.startswith("s1._domainkey.example.test. IN TXT ( ")
    strings = line.split('"')[1::2]
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == key.record()
