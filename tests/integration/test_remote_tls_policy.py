"""remote's outbound TLS policies: MTA-STS (RFC 8461) and DANE (RFC 7672) (issue 11).

A real nats-server (the policy cache is the KV bucket qmesh_mtasts), the loopback DNS server of
tests/dnsserver.py (MX, the _mta-sts TXT record, TLSA records with the AD bit a validating
resolver sets), an HTTPS policy server with a certificate from a test CA that remote trusts
through QMESH_TLS_CA_FILE, and aiosmtpd sinks with and without STARTTLS.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from qmesh.contract import subjects
from qmesh.dns.resolver import async_resolver
from qmesh.runtime.service import start
from qmesh.runtime.settings import Settings
from qmesh.tlspolicy.dane import spki
from services.remote import report
from services.remote.app import assemble
from tests.dnsserver import DnsFixture, serving, txt
from tests.integration import test_remote
from tests.integration.remote_peers import Sink, start_sink
from tests.integration.test_remote import Harness
from tests.mtasts import Pki, make_pki, policy, policy_server

pytestmark = pytest.mark.integration

harness = test_remote.harness
close_peer_connections = test_remote.close_peer_connections

NAMES = ["mta-sts.enforce.test", "mx.enforce.test", "mta-sts.testing.test", "mx.testing.test"]
NAMES += ["mx.dane.test", "mta-sts.dane.test", "mta-sts.strict.test", "other.strict.test"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), NAMES)


def world(sink_port: int, *, tlsa: str | None = None) -> dict[tuple[str, str], list[str]]:
    records = {
        ("enforce.test", "MX"): ["10 mx.enforce.test."],
        ("mx.enforce.test", "A"): ["127.0.0.1"],
        ("_mta-sts.enforce.test", "TXT"): [txt("v=STSv1; id=20261206")],
        ("mta-sts.enforce.test", "A"): ["127.0.0.1"],
        ("strict.test", "MX"): ["10 other.strict.test."],
        ("other.strict.test", "A"): ["127.0.0.1"],
        ("_mta-sts.strict.test", "TXT"): [txt("v=STSv1; id=1")],
        ("mta-sts.strict.test", "A"): ["127.0.0.1"],
        ("testing.test", "MX"): ["10 mx.testing.test."],
        ("mx.testing.test", "A"): ["127.0.0.1"],
        ("_mta-sts.testing.test", "TXT"): [txt("v=STSv1; id=7")],
        ("mta-sts.testing.test", "A"): ["127.0.0.1"],
        ("dane.test", "MX"): ["10 mx.dane.test."],
        ("mx.dane.test", "A"): ["127.0.0.1"],
        # DANE wins over MTA-STS (RFC 8461 section 2): this policy would refuse mx.dane.test
        ("_mta-sts.dane.test", "TXT"): [txt("v=STSv1; id=1")],
        ("mta-sts.dane.test", "A"): ["127.0.0.1"],
    }
    if tlsa is not None:
        records[(f"_{sink_port}._tcp.mx.dane.test", "TLSA")] = [tlsa]
    return records


@pytest.fixture
def dns_world() -> Iterator[DnsFixture]:
    with serving({}, secure={"dane.test", "mx.dane.test"}) as dns:
        yield dns


POLICIES = {
    "mta-sts.enforce.test": policy("enforce", "mx.enforce.test"),
    "mta-sts.strict.test": policy("enforce", "mx.strict.test"),
    "mta-sts.testing.test": policy("testing", "mx.testing.test"),
    "mta-sts.dane.test": policy("enforce", "nothing.dane.test"),
}


async def start_remote(
    h: Harness, dns: DnsFixture, pki: Pki, smtp_port: int, https_port: int
) -> None:
    settings = Settings(
        nats_url=h.nats_url,
        control=h.control,
        http_host="127.0.0.1",
        http_port=0,
        store=f"file://{h.tmp / 'unused'}",
        dns_servers=dns.server,
        tls_ca_file=pki.ca,
    )
    service = assemble(
        settings,
        queue=h.store,
        resolver=async_resolver(settings.dns_servers, lifetime=5.0),
        environ={},
        smtp_port=smtp_port,
        https_port=https_port,
    )
    h.running.append(await start(service, settings))


async def purge_cache(h: Harness, *domains: str) -> None:
    kv = await h.js.key_value(subjects.KV_MTASTS)
    for domain in domains:
        with contextlib.suppress(Exception):
            await kv.purge(domain)


def tlsrpt(policy_type: str, result_type: str) -> float:
    """RFC 8460's names: qmesh_remote_tlsrpt_sessions_total{policy_type,result_type}."""
    labels = {"policy_type": policy_type, "result_type": result_type}
    return REGISTRY.get_sample_value("qmesh_remote_tlsrpt_sessions_total", labels) or 0.0


def counter(policy_name: str, mode: str, result: str) -> float:
    labels = {"policy": policy_name, "mode": mode, "result": result}
    return REGISTRY.get_sample_value("qmesh_remote_tls_policy_total", labels) or 0.0


async def test_enforce_refuses_plaintext_and_defers_with_a_clear_reason(
    harness: Harness, dns_world: DnsFixture, pki: Pki
) -> None:
    """RFC 8461 section 5: an `enforce` policy and an MX without STARTTLS: nothing is sent,
    the message waits with a reason that names the policy; the policy is cached in KV."""
    s = Sink()
    server, port = await start_sink(s)
    dns_world.records.update(world(port))
    await purge_cache(harness, "enforce.test")
    before = tlsrpt("sts", "starttls-not-supported")
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@enforce.test")
    server.close()
    assert tlsrpt("sts", "starttls-not-supported") == before + 1  # RFC 8460 section 4.3.1
    assert result.outcome == "deferred"
    assert result.report == report.tls_required(
        "127.0.0.1", "the MTA-STS policy of enforce.test", "STARTTLS is not offered"
    )
    assert s.messages == []
    entry = await (await harness.js.key_value(subjects.KV_MTASTS)).get("enforce.test")
    cached = json.loads(entry.value or b"")
    assert (cached["id"], cached["mode"], cached["mx"]) == (
        "20261206",
        "enforce",
        ["mx.enforce.test"],
    )
    assert cached["max_age"] == 86400


async def test_enforce_delivers_over_authenticated_tls(
    harness: Harness, dns_world: DnsFixture, pki: Pki
) -> None:
    s = Sink()
    server, port = await start_sink(s, tls_context=pki.server_context())
    dns_world.records.update(world(port))
    await purge_cache(harness, "enforce.test")
    before = counter("mta-sts", "enforce", "ok")
    successes = tlsrpt("sts", "success")
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@enforce.test")
    server.close()
    assert result.outcome == "delivered", result.report
    (got,) = s.messages
    assert got.tls
    assert counter("mta-sts", "enforce", "ok") == before + 1
    assert tlsrpt("sts", "success") == successes + 1


async def test_enforce_skips_an_mx_the_policy_does_not_name(
    harness: Harness, dns_world: DnsFixture, pki: Pki
) -> None:
    """RFC 8461 section 4.1: other.strict.test does not match `mx: mx.strict.test`."""
    s = Sink()
    server, port = await start_sink(s, tls_context=pki.server_context())
    dns_world.records.update(world(port))
    await purge_cache(harness, "strict.test")
    before = tlsrpt("sts", "validation-failure")
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@strict.test")
    server.close()
    assert result.outcome == "deferred"
    assert result.report == report.no_policy_mx("strict.test")
    assert s.messages == []
    assert tlsrpt("sts", "validation-failure") == before + 1


async def test_testing_only_reports(harness: Harness, dns_world: DnsFixture, pki: Pki) -> None:
    """RFC 8461 section 5: `testing` delivers anyway and counts the failure."""
    s = Sink()
    server, port = await start_sink(s)
    dns_world.records.update(world(port))
    await purge_cache(harness, "testing.test")
    before = counter("mta-sts", "testing", "failed")
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@testing.test")
    server.close()
    assert result.outcome == "delivered"
    assert len(s.messages) == 1 and not s.messages[0].tls
    assert counter("mta-sts", "testing", "failed") == before + 1


async def test_no_policy_server_means_no_policy(
    harness: Harness, dns_world: DnsFixture, pki: Pki
) -> None:
    """RFC 8461 section 3.3: a policy that cannot be fetched is no reason to refuse delivery."""
    s = Sink()
    server, port = await start_sink(s)
    dns_world.records.update(world(port))
    await purge_cache(harness, "enforce.test")
    before = tlsrpt("sts", "sts-policy-fetch-error")
    async with policy_server(pki, {}) as https:  # every fetch is a 404
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@enforce.test")
    server.close()
    assert result.outcome == "delivered"
    assert tlsrpt("sts", "sts-policy-fetch-error") == before + 1  # RFC 8460 section 4.3.2.2


async def test_an_invalid_policy_is_counted_and_not_used(
    harness: Harness, dns_world: DnsFixture, pki: Pki
) -> None:
    """RFC 8460 section 4.3.2.2: sts-policy-invalid; RFC 8461 section 3.2: no policy then."""
    s = Sink()
    server, port = await start_sink(s)
    dns_world.records.update(world(port))
    await purge_cache(harness, "enforce.test")
    before = tlsrpt("sts", "sts-policy-invalid")
    broken = {"mta-sts.enforce.test": b"version: STSv1\r\nmode: enforce\r\nmax_age: x\r\n"}
    async with policy_server(pki, broken) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@enforce.test")
    server.close()
    assert result.outcome == "delivered"
    assert tlsrpt("sts", "sts-policy-invalid") == before + 1


@pytest.mark.parametrize("match", [True, False])
async def test_dane_ee_record_decides_and_wins_over_mta_sts(
    harness: Harness, dns_world: DnsFixture, pki: Pki, match: bool
) -> None:
    """RFC 7672 section 3.1.1: DANE-EE(3) SPKI(1) SHA-256(1) must match the MX's certificate;
    RFC 8461 section 2: with DANE records the MTA-STS policy (which names no such MX) is not
    applied."""
    s = Sink()
    server, port = await start_sink(s, tls_context=pki.server_context())
    public = spki(pki.der)
    assert public is not None
    digest = hashlib.sha256(public if match else b"other key").hexdigest()
    dns_world.records.update(world(port, tlsa=f"3 1 1 {digest}"))
    dns_world.secure.add(f"_{port}._tcp.mx.dane.test")
    await purge_cache(harness, "dane.test")
    result_type = "success" if match else "validation-failure"
    before = tlsrpt("tlsa", result_type)
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@dane.test")
    server.close()
    assert tlsrpt("tlsa", result_type) == before + 1
    if match:
        assert result.outcome == "delivered", result.report
        assert s.messages[0].tls
    else:
        assert result.outcome == "deferred"
        assert "DANE (TLSA records of mx.dane.test)" in result.report
        assert "matches none of its TLSA records" in result.report
        assert s.messages == []


async def test_a_cached_policy_holds_when_the_policy_host_is_gone(
    harness: Harness, dns_world: DnsFixture, pki: Pki
) -> None:
    """RFC 8461 sections 3.3 and 5.1: the policy cached in KV (max_age one day) still applies
    when the HTTPS host no longer answers and the TXT id is unchanged."""
    s = Sink()
    server, port = await start_sink(s)
    dns_world.records.update(world(port))
    await purge_cache(harness, "enforce.test")
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        first = await harness.deliver("bob@enforce.test")
    second = await harness.deliver("carol@enforce.test")  # the policy server is closed now
    server.close()
    assert first.outcome == second.outcome == "deferred"
    assert "MTA-STS policy of enforce.test" in second.report
    assert s.messages == []


async def test_a_failed_tlsa_lookup_under_a_signed_mx_defers(
    harness: Harness, dns_world: DnsFixture, pki: Pki
) -> None:
    """RFC 7672 section 2.2: the MX answer is validated, its TLSA lookup fails (a validating
    resolver answers SERVFAIL for bogus data): that MX is not used; RFC 8460: dnssec-invalid."""
    s = Sink()
    server, port = await start_sink(s, tls_context=pki.server_context())
    dns_world.records.update(world(port))
    dns_world.servfail.add(f"_{port}._tcp.mx.dane.test")
    await purge_cache(harness, "dane.test")
    before = tlsrpt("tlsa", "dnssec-invalid")
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@dane.test")
    server.close()
    assert result.outcome == "deferred"
    assert result.report == report.tlsa_unavailable("mx.dane.test")
    assert s.messages == []
    assert tlsrpt("tlsa", "dnssec-invalid") == before + 1


async def test_dane_with_only_unusable_records_delivers_over_tls_and_counts_tlsa_invalid(
    harness: Harness, dns_world: DnsFixture, pki: Pki
) -> None:
    """RFC 7672 section 2.2: no usable TLSA record, TLS still required; RFC 8460: tlsa-invalid."""
    s = Sink()
    server, port = await start_sink(s, tls_context=pki.server_context())
    dns_world.records.update(world(port, tlsa="1 1 1 " + "ab" * 32))  # PKIX-EE: unusable
    dns_world.secure.add(f"_{port}._tcp.mx.dane.test")
    await purge_cache(harness, "dane.test")
    before = tlsrpt("tlsa", "tlsa-invalid")
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@dane.test")
    server.close()
    assert result.outcome == "delivered", result.report
    assert s.messages[0].tls
    assert tlsrpt("tlsa", "tlsa-invalid") == before + 1


@pytest.mark.parametrize("anchor", ["ca", "leaf"])
async def test_dane_ta_record_authenticates_the_chain_the_mx_sends(
    harness: Harness, dns_world: DnsFixture, pki: Pki, anchor: str, tmp_path: Path
) -> None:
    """RFC 7672 section 3.1.2: DANE-TA(2) SPKI(1) SHA-256(1) of the test CA; the MX sends its
    certificate and the CA's, and its certificate names mx.dane.test. The server's own key
    as a trust anchor authenticates nothing (that would be DANE-EE's record)."""
    chain = tmp_path / "chain.pem"
    chain.write_text(pki.cert.read_text() + pki.ca.read_text())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, pki.key)
    s = Sink()
    server, port = await start_sink(s, tls_context=context)
    ca_der = ssl.PEM_cert_to_DER_cert(pki.ca.read_text())
    public = spki(ca_der if anchor == "ca" else pki.der)
    assert public is not None
    dns_world.records.update(world(port, tlsa=f"2 1 1 {hashlib.sha256(public).hexdigest()}"))
    dns_world.secure.add(f"_{port}._tcp.mx.dane.test")
    await purge_cache(harness, "dane.test")
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@dane.test")
    server.close()
    if anchor == "ca":
        assert result.outcome == "delivered", result.report
        assert s.messages[0].tls
    else:
        assert result.outcome == "deferred"
        assert "matches none of its TLSA records" in result.report
        assert s.messages == []


@pytest.mark.parametrize("unsigned", ["dane.test", "tlsa"])
async def test_tlsa_records_without_dnssec_are_not_used_and_mta_sts_applies(
    harness: Harness, dns_world: DnsFixture, pki: Pki, unsigned: str
) -> None:
    """RFC 7672 section 2.2: TLSA records count only when DNSSEC validated them and the MX
    answer they hang from (no AD bit: an insecure answer); without DANE, the MTA-STS policy
    applies (RFC 8461 section 2), and it names no MX of dane.test. A TLSA record that would
    refuse the MX (a digest of another key) is therefore never the reason."""
    s = Sink()
    server, port = await start_sink(s, tls_context=pki.server_context())
    digest = hashlib.sha256(b"other key").hexdigest()
    dns_world.records.update(world(port, tlsa=f"3 1 1 {digest}"))
    if unsigned == "dane.test":  # the MX answer is insecure, the TLSA answer looks signed
        dns_world.secure.discard("dane.test")
        dns_world.secure.add(f"_{port}._tcp.mx.dane.test")
    await purge_cache(harness, "dane.test")
    before = [tlsrpt("tlsa", r) for r in ("success", "validation-failure", "tlsa-invalid")]
    async with policy_server(pki, POLICIES) as https:
        await start_remote(harness, dns_world, pki, port, https)
        result = await harness.deliver("bob@dane.test")
    server.close()
    assert result.outcome == "deferred"
    assert result.report == report.no_policy_mx("dane.test")
    assert "TLSA" not in result.report and s.messages == []
    assert [tlsrpt("tlsa", r) for r in ("success", "validation-failure", "tlsa-invalid")] == before
