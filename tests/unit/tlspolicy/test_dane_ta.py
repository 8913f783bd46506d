"""DANE-TA (RFC 7672 section 3.1.2, RFC 7671 section 5.2.2): the trust anchor named by the
TLSA record is in the chain the server sent, every link is signed by a CA, and the server's
certificate names the MX host. CAs generated here with openssl (issue 11)."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from qmesh.tlspolicy.dane import Tlsa, authenticates, spki
from qmesh.tlspolicy.x509 import CertError, parse

MX = "mx.dane.test"


@dataclass
class Certs:
    ca: bytes
    inter: bytes
    leaf: bytes  # mx.dane.test and *.wild.test, issued by inter
    direct: bytes  # mx.dane.test, issued by ca
    rogue_ca: bytes
    rogue_leaf: bytes  # mx.dane.test, issued by rogue_ca
    not_ca: bytes  # a leaf certificate (CA:FALSE)...
    under_not_ca: bytes  # ...that signed this one
    ed_ca: bytes
    ed_leaf: bytes
    sha1_leaf: bytes  # mx.dane.test, issued by ca with a SHA-1 signature


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d: Path = tmp_path_factory.mktemp("dane-ta")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    def key(name: str, kind: str) -> None:
        if kind == "rsa":
            run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", name)
        elif kind == "ec":
            run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)
        else:
            run("genpkey", "-algorithm", "ED25519", "-out", name)

    def root(name: str, kind: str) -> None:
        key(f"{name}.key", kind)
        run("req", "-x509", "-new", "-key", f"{name}.key", "-days", "2", "-subj",
            f"/CN={name}", "-out", f"{name}.pem", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip

    def issue(name: str, kind: str, issuer: str, ext: str, digest: str = "-sha256") -> None:
        key(f"{name}.key", kind)
        run("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr")
        (d / f"{name}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey",
            f"{issuer}.key", "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
            "-out", f"{name}.pem", digest)  # fmt: skip

    server = f"subjectAltName=DNS:{MX},DNS:*.wild.test\nbasicConstraints=CA:FALSE"
    root("ca", "rsa")
    issue("inter", "ec", "ca", "basicConstraints=critical,CA:TRUE")
    issue("leaf", "ec", "inter", server)
    issue("direct", "rsa", "ca", server)
    root("rogue_ca", "rsa")
    issue("rogue_leaf", "rsa", "rogue_ca", server)
    issue("not_ca", "rsa", "ca", server)
    issue("under_not_ca", "rsa", "not_ca", server)
    root("ed_ca", "ed25519")
    issue("ed_leaf", "ed25519", "ed_ca", server)
    issue("sha1_leaf", "rsa", "ca", server, "-sha1")

    def der(name: str) -> bytes:
        return ssl.PEM_cert_to_DER_cert((d / f"{name}.pem").read_text())

    return Certs(*(der(n) for n in Certs.__dataclass_fields__))


def ta(cert: bytes, selector: int = 1, mtype: int = 1) -> Tlsa:
    subject = spki(cert) if selector == 1 else cert
    assert subject is not None
    data = {0: subject, 1: hashlib.sha256(subject).digest(), 2: hashlib.sha512(subject).digest()}
    return Tlsa(2, selector, mtype, data[mtype])


def test_a_chain_up_to_the_anchor_authenticates(certs: Certs) -> None:
    chain = [certs.leaf, certs.inter, certs.ca]
    assert authenticates([ta(certs.ca)], chain, [MX])
    assert authenticates([ta(certs.ca, 0, 2)], chain, [MX])
    assert authenticates([ta(certs.inter, 0, 0)], chain, [MX])  # the intermediate as anchor
    assert authenticates([ta(certs.ca)], [certs.direct, certs.ca], [MX])
    assert authenticates([ta(certs.ed_ca)], [certs.ed_leaf, certs.ed_ca], [MX])
    assert authenticates([ta(certs.ca)], chain, ["anything.wild.test"])  # *.wild.test


def test_a_wrong_anchor_name_or_path_does_not(certs: Certs) -> None:
    chain = [certs.leaf, certs.inter, certs.ca]
    assert not authenticates([ta(certs.rogue_ca)], chain, [MX])
    assert not authenticates([ta(certs.ca)], chain, ["other.test"])
    assert not authenticates([ta(certs.ca)], chain, ["a.b.wild.test"])  # one label only
    assert not authenticates([ta(certs.ca)], [certs.leaf, certs.inter], [MX])  # anchor not sent
    assert not authenticates([ta(certs.ca)], [certs.leaf, certs.ca], [MX])  # a link missing
    # a leaf of another CA with the anchor's certificate sent after it
    assert not authenticates([ta(certs.ca)], [certs.rogue_leaf, certs.ca], [MX])
    # a certificate that is not a CA cannot issue (basicConstraints)
    assert not authenticates([ta(certs.ca)], [certs.under_not_ca, certs.not_ca, certs.ca], [MX])
    # a link signed with SHA-1 does not count
    assert not authenticates([ta(certs.ca)], [certs.sha1_leaf, certs.ca], [MX])
    # the anchor as the server's own certificate is DANE-EE's job, not DANE-TA's
    assert not authenticates([ta(certs.ca)], [certs.ca], ["ca"])


def test_dane_ee_still_matches_the_servers_own_certificate(certs: Certs) -> None:
    public = spki(certs.rogue_leaf)
    assert public is not None
    ee = Tlsa(3, 1, 1, hashlib.sha256(public).digest())
    assert authenticates([ee], [certs.rogue_leaf], ["no name is checked"])


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x30",
        b"\x30\x84\xff\xff\xff\xff",
        b"\x30\x03\x02\x01\x01",
        b"\x30\x80\x00\x00",  # indefinite length
        os.urandom(600),
        b"\x30\x82\x01\x00" + b"\x00" * 10,
    ],
)
def test_hostile_certificates_are_a_clean_no(certs: Certs, bad: bytes) -> None:
    with pytest.raises(CertError):
        parse(bad)
    assert not authenticates([ta(certs.ca)], [certs.leaf, bad, certs.ca], [MX])
    assert not authenticates([ta(certs.ca)], [bad, certs.inter, certs.ca], [MX])


def test_a_truncated_or_altered_certificate_is_a_clean_no(certs: Certs) -> None:
    for cut in range(1, len(certs.leaf), 97):
        truncated = certs.leaf[:cut]
        assert not authenticates([ta(certs.ca)], [truncated, certs.inter, certs.ca], [MX])
    flipped = bytearray(certs.leaf)
    flipped[len(flipped) // 3] ^= 0x01  # inside the signed part: the signature fails
    chain = [bytes(flipped), certs.inter, certs.ca]
    assert not authenticates([ta(certs.ca)], chain, [MX])
