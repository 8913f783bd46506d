"""remote's outbound TLS policies: MTA-STS (RFC 8461) and DANE (RFC 7672), looked up per domain.

MTA-STS (section 3 and 5.1): the ``_mta-sts.<domain>`` TXT record gives the policy's id; the
policy itself is fetched from ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (a certificate
valid for that name, no redirects, at most 64 KB, a 200 answer with ``text/plain``) and cached in
the KV bucket ``qmesh_mtasts`` with its ``max_age``, shared by every replica. A cached policy is
used while it is fresh and its id is still the one in DNS; when DNS or HTTPS fail, a fresh cached
policy is used; without one there is no policy (section 3.3 and 5: a failed fetch is never
a reason to refuse delivery). The policy host is resolved through ``QMESH_DNS_SERVERS`` like
every other name.

DANE (RFC 7672 section 2.2): the ``_<port>._tcp.<mx>`` TLSA records count only when the resolver
marked them DNSSEC-validated (the AD bit), and only for an MX taken from a validated MX answer.
When that lookup fails (a validating resolver answers SERVFAIL for bogus data, or no answer
comes), the MX is not used: another MX is tried, or the message waits.
Per RFC 8461 section 2, an MX with DANE records is checked by DANE, not by MTA-STS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.resolver
import h11
from nats.js.kv import KeyValue

from qmesh.tlspolicy.dane import Tlsa
from qmesh.tlspolicy.mtasts import MAX_POLICY_BYTES, Policy, PolicyError, parse_policy, policy_id
from services.remote import tlsrpt
from services.remote.mx import addresses

log = logging.getLogger(__name__)

HTTPS_PORT = 443
FETCH_TIMEOUT = 30.0  # seconds for connect, TLS, request and answer together
WELL_KNOWN = "/.well-known/mta-sts.txt"


def verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificates checked against the system's CAs and ``ca_file`` (``QMESH_TLS_CA_FILE``)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def fetch_failure(err: BaseException) -> str:
    """RFC 8460 section 4.3.2.2: why the MTA-STS policy could not be had."""
    if isinstance(err, PolicyError):
        return tlsrpt.STS_POLICY_INVALID
    if isinstance(err, ssl.SSLCertVerificationError):
        return tlsrpt.STS_WEBPKI_INVALID
    return tlsrpt.STS_POLICY_FETCH_ERROR


class TlsaLookupFailed(Exception):
    """RFC 7672 section 2.2: the TLSA records of an MX from a validated MX answer could not be
    had (bogus or indeterminate); that MX is not used."""


class TlsPolicies:
    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        cache: Callable[[], KeyValue] | None,
        *,
        ca_file: Path | None = None,
        https_port: int = HTTPS_PORT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._resolver = resolver
        self._cache = cache
        self._context = verifying_context(ca_file)
        self._https_port = https_port
        self._clock = clock

    @property
    def context(self) -> ssl.SSLContext:
        """The verifying context MTA-STS connections use (the MX name must be on the cert)."""
        return self._context

    async def mta_sts(self, domain: str) -> Policy | None:
        """The domain's MTA-STS policy, from the cache or fetched; None when it has none."""
        domain = domain.lower().rstrip(".")
        cached = await self._cached(domain)
        state, ident = await self._policy_id(domain)
        if cached is not None and (state != "found" or ident is None or ident == cached[0]):
            return cached[1]  # fresh, and DNS agrees or cannot say otherwise (section 5.1)
        if ident is None:
            return None
        try:
            policy = parse_policy(await self._fetch(domain))
        except (PolicyError, OSError, ssl.SSLError, TimeoutError, h11.ProtocolError) as err:
            log.warning("mtasts.fetch_failed", extra={"domain": domain, "reason": str(err)[:200]})
            tlsrpt.record("mta-sts", fetch_failure(err), domain=domain)
            return None
        await self._store(domain, ident, policy)
        log.info("mtasts.policy", extra={"domain": domain, "mode": policy.mode, "id": ident})
        return policy

    async def _policy_id(self, domain: str) -> tuple[str, str | None]:
        try:
            answer = await self._resolver.resolve(f"_mta-sts.{domain}.", "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return "found", None
        except dns.exception.DNSException:
            return "temporary", None
        texts = [b"".join(rd.strings).decode("utf-8", "replace") for rd in answer]
        return "found", policy_id(texts)

    async def _fetch(self, domain: str) -> bytes:
        host = f"mta-sts.{domain}"
        state, found = await addresses(self._resolver, dns.name.from_text(host))
        if not found:
            raise OSError(f"no address for {host} ({state})")
        async with asyncio.timeout(FETCH_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                found[0], self._https_port, ssl=self._context, server_hostname=host
            )
            try:
                return await _get(reader, writer, host)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _cached(self, domain: str) -> tuple[str, Policy] | None:
        if self._cache is None:
            return None
        try:
            entry = await self._cache().get(domain)
        except Exception:  # not there, or the bucket is not reachable: no cached policy
            return None
        try:
            data = json.loads(entry.value or b"")
            policy = Policy(data["mode"], tuple(data["mx"]), int(data["max_age"]))
            if self._clock() > float(data["fetched"]) + policy.max_age:
                return None  # expired (section 3.3: max_age)
            return str(data["id"]), policy
        except (ValueError, KeyError, TypeError):
            return None

    async def _store(self, domain: str, ident: str, policy: Policy) -> None:
        if self._cache is None:
            return
        record = {
            "id": ident,
            "mode": policy.mode,
            "mx": list(policy.mx),
            "max_age": policy.max_age,
            "fetched": self._clock(),
        }
        try:
            await self._cache().put(domain, json.dumps(record).encode())
        except Exception as err:  # the next delivery fetches again
            log.warning("mtasts.cache_failed", extra={"domain": domain, "reason": str(err)})

    async def dane(self, domain: str, mx: str, port: int) -> tuple[Tlsa, ...] | None:
        """The validated TLSA records of ``mx``; None when DANE does not apply to it;
        :class:`TlsaLookupFailed` when the MX answer was validated but the TLSA lookup failed."""
        if not await self._secure(f"{domain}.", "MX"):
            return None
        name = f"_{port}._tcp.{mx.rstrip('.')}."
        try:
            answer = await self._resolver.resolve(name, "TLSA", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as err:  # SERVFAIL (bogus), timeout: indeterminate
            raise TlsaLookupFailed(f"{name}: {type(err).__name__}") from err
        if not answer.response.flags & dns.flags.AD:
            return None
        return tuple(
            Tlsa(rd.usage, rd.selector, rd.mtype, bytes(rd.cert))
            for rd in answer
            if hasattr(rd, "usage")
        )

    async def _secure(self, name: str, rdtype: str) -> bool:
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except dns.exception.DNSException:
            return False
        return bool(answer.response.flags & dns.flags.AD)


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> bytes:
    """GET the policy with h11: 200 only (no redirects, section 3.3), text/plain, <= 64 KB."""
    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=WELL_KNOWN,
        headers=[("Host", host), ("User-Agent", "qmesh"), ("Connection", "close")],
    )
    writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
    await writer.drain()
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(16384))
            continue
        if isinstance(event, h11.Response):
            if event.status_code != 200:
                raise OSError(f"HTTP {event.status_code} from {host}")
            kind = dict(event.headers).get(b"content-type", b"").decode("latin-1")
            if not kind.lower().startswith("text/plain"):
                raise OSError(f"content type {kind[:40]!r} from {host}")
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
            if len(body) > MAX_POLICY_BYTES:
                raise OSError(f"policy from {host} larger than 64 KB")
        elif isinstance(event, h11.EndOfMessage):
            return body
        elif isinstance(event, h11.ConnectionClosed):
            raise OSError(f"{host} closed the connection early")
