"""DANE-EE matching (RFC 7672 section 3.1.1, RFC 6698 section 2.1): which TLSA records match."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from qmesh.tlspolicy.dane import Tlsa, authenticates, matches, spki


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    d: Path = tmp_path_factory.mktemp("cert")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=mx.test", "-keyout", str(d / "k"),
         "-outform", "DER", "-out", str(d / "c")],
        check=True, capture_output=True,
    )  # fmt: skip
    der = (d / "c").read_bytes()
    public = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", str(d / "c"), "-pubkey", "-noout"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    spki_der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=public, check=True,
        capture_output=True,
    ).stdout  # fmt: skip
    return der, spki_der


def test_spki_is_what_openssl_says(cert: tuple[bytes, bytes]) -> None:
    der, expected = cert
    assert spki(der) == expected


@pytest.mark.parametrize(
    ("usage", "selector", "mtype", "of", "ok"),
    [
        (3, 1, 1, "spki", True),
        (3, 1, 2, "spki", True),
        (3, 0, 1, "cert", True),
        (3, 0, 0, "cert", True),
        (3, 1, 1, "other", False),
        (2, 1, 1, "spki", False),  # DANE-TA: the anchor must come after the server's cert
        (1, 1, 1, "spki", False),  # PKIX-EE: unusable for SMTP (RFC 7672 3.1.3)
        (3, 1, 3, "spki", False),  # unknown matching type
    ],
)
def test_matches(cert, usage: int, selector: int, mtype: int, of: str, ok: bool) -> None:
    der, public = cert
    subject = {"spki": public, "cert": der, "other": b"x"}[of]
    data = {0: subject, 1: hashlib.sha256(subject).digest(), 2: hashlib.sha512(subject).digest()}
    record = Tlsa(usage, selector, mtype, data.get(mtype, b"\x00"))
    assert authenticates([record], [der], ["mx.test"]) is ok


def test_garbage_certificate_matches_nothing() -> None:
    assert spki(b"\x30\x03\x02\x01\x00") is None
    assert not matches([Tlsa(3, 1, 1, b"\x00" * 32)], b"\x00garbage")
    assert not matches([], b"")
