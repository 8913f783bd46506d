"""qmesh dns DOMAIN --check against the loopback DNS server: each difference named (issue 11).

The records are those of RFC 6376 (DKIM, one per selector, RSA and RFC 8463 Ed25519),
RFC 7208 (SPF), RFC 7489 (DMARC), RFC 8461 (MTA-STS) and RFC 8460 (TLS-RPT).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmesh.cli.main import main
from qmesh.dkim.keys import generate, parse_key
from tests.dnsserver import serving, txt

pytestmark = pytest.mark.integration

RSA = generate("rsa")
ED = generate("ed25519")


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "me").write_text("mx.example.test\n")
    keys = tmp_path / "domainkeys" / "example.test"
    keys.mkdir(parents=True)
    (keys / "r1").write_bytes(RSA)
    (keys / "e1").write_bytes(ED)
    (keys / "selector").write_text("r1\ne1\n")
    monkeypatch.setenv("QMESH_CONTROL", str(tmp_path))
    return tmp_path


def published() -> dict[tuple[str, str], list[str]]:
    return {
        ("example.test", "MX"): ["10 mx.example.test."],
        ("example.test", "TXT"): [txt("v=spf1 mx -all"), txt("google-site-verification=x")],
        ("r1._domainkey.example.test", "TXT"): [txt(parse_key(RSA).record())],
        ("e1._domainkey.example.test", "TXT"): [txt(parse_key(ED).record())],
        ("_dmarc.example.test", "TXT"): [txt("v=DMARC1; p=reject; rua=mailto:d@example.test")],
        ("_mta-sts.example.test", "TXT"): [txt("v=STSv1; id=2026")],
        ("_smtp._tls.example.test", "TXT"): [txt("v=TLSRPTv1; rua=mailto:tls@example.test")],
    }


def check(monkeypatch: pytest.MonkeyPatch, port: int, capsys) -> tuple[int, str]:
    monkeypatch.setenv("QMESH_DNS_SERVERS", f"127.0.0.1:{port}")
    code = main(["dns", "example.test", "--check"])
    return code, capsys.readouterr().out


def test_everything_published(control: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with serving(published()) as dns:
        code, out = check(monkeypatch, dns.port, capsys)
    assert code == 0, out
    assert out.count("ok ") == 7  # MX, SPF, two DKIM keys, DMARC, MTA-STS, TLS-RPT
    assert "ok DKIM: r1._domainkey.example.test" in out


def test_each_difference_is_named(control: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    records = published()
    records[("example.test", "MX")] = ["10 other.example.test."]
    records[("example.test", "TXT")] = [txt("v=spf1 a -all"), txt("v=spf1 mx -all")]
    del records[("r1._domainkey.example.test", "TXT")]
    records[("e1._domainkey.example.test", "TXT")] = [txt(parse_key(generate("ed25519")).record())]
    records[("_dmarc.example.test", "TXT")] = [txt("v=DMARC1; p=maybe")]
    del records[("_smtp._tls.example.test", "TXT")]
    with serving(records) as dns:
        code, out = check(monkeypatch, dns.port, capsys)
    assert code == 1
    assert (
        "MX: example.test: mx.example.test is not among its exchangers (other.example.test)" in out
    )
    assert "SPF: example.test has 2 v=spf1 records" in out
    assert "DKIM: r1._domainkey.example.test has no key record" in out
    assert "DKIM: e1._domainkey.example.test publishes another key (k=ed25519)" in out
    assert "DMARC: _dmarc.example.test: 'v=DMARC1; p=maybe' has no valid v=DMARC1 and p=" in out
    assert "TLS-RPT: _smtp._tls.example.test has no v=TLSRPTv1 record" in out
    assert "ok MTA-STS: _mta-sts.example.test" in out
    assert "6 difference(s)" in out
    assert "   publish: r1._domainkey.example.test. IN TXT (" in out


def test_dns_failures_are_not_differences(
    control: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    with serving(published(), servfail={"_dmarc.example.test"}) as dns:
        code, out = check(monkeypatch, dns.port, capsys)
    assert code == 111
    assert "?  DMARC: _dmarc.example.test: DNS did not answer" in out


def test_without_check_prints_the_records(control: Path, capsys) -> None:
    assert main(["dns", "Example.TEST"]) == 0
    out = capsys.readouterr().out
    assert "example.test. IN MX 10 mx.example.test." in out
    assert 'e1._domainkey.example.test. IN TXT "v=DKIM1; k=ed25519; p=' in out
    assert "_mta-sts.example.test. IN TXT" in out and "mode: testing" in out


def test_bad_domain_is_refused(control: Path, capsys) -> None:
    assert main(["dns", "not a domain"]) == 1
    assert capsys.readouterr().err.startswith("qmesh dns: ")
