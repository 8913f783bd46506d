"""The checks at the door over DNS: SPF, DKIM, DMARC and ARC for one message (issue 11).

pyspf and dkimpy are synchronous, so one message's checks run in a thread of a small pool of
their own (the spool's disk writes never wait behind them), over a resolver built from
``QMESH_DNS_SERVERS``. Each DNS lookup may take at most :data:`PER_LOOKUP` seconds and all
lookups of one message together at most :data:`BUDGET`; once that is spent every further
lookup is ``temperror`` at once, so a resolver that does not answer costs a message at most
the budget, never a refusal. The message is read once: whole when it is at most
:data:`VERIFY_BYTES` (DKIM and ARC need the body), else its first megabyte (the header
block; its DKIM signatures are then ``policy``, not judged). Counted in
``qmesh_smtpd_dmarc_total{result}``, logged as ``smtpd.auth``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import dkim
import dns.resolver
import spf

from qmesh.address import client_address
from qmesh.auth.dkim import DkimResult, verify_dkim
from qmesh.auth.dmarc import DmarcResult, check_dmarc
from qmesh.auth.lookup import DnsTemporary, TxtLookup, txt_lookup
from qmesh.auth.spf import Lookup, SpfResult, check_spf, resolver_lookup
from qmesh.dkim.sign import MAX_HEADER_BYTES, from_domain, header_block
from services.smtpd import metrics
from services.smtpd.authresults import Checked

log = logging.getLogger(__name__)

PER_LOOKUP = 4.0  # seconds one DNS lookup may take, retries included
BUDGET = 10.0  # seconds all lookups for one message may take together
VERIFY_BYTES = 10 << 20  # larger messages: DKIM and ARC are not verified
WORKERS = 16

_DKIM_FIELD = re.compile(rb"(?im)^dkim-signature[ \t]*:")
_ARC_FIELD = re.compile(rb"(?im)^arc-seal[ \t]*:")
_quiet = logging.getLogger("qmesh.auth.dkimpy")


class DoorChecks:
    def __init__(
        self,
        resolver: dns.resolver.Resolver,
        *,
        per_lookup: float = PER_LOOKUP,
        budget: float = BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._per_lookup = per_lookup
        self._budget = budget
        self._clock = clock
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="smtpd-auth")

    async def check(
        self, *, ip: str, helo: str, sender: str, message: AsyncIterable[bytes], size: int
    ) -> Checked:
        whole = size <= VERIFY_BYTES
        text = await _read(message, size if whole else MAX_HEADER_BYTES + 4)
        work = partial(self.check_now, ip=ip, helo=helo, sender=sender, text=text, whole=whole)
        try:
            checked = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._pool, work),
                self._budget * 2 + 5,  # the budget bounds it; this bounds a library's bug
            )
        except TimeoutError:
            checked = _all_temperror(sender, "checks took too long")
        except Exception:  # a library's bug must not lose the message: recorded as temperror
            log.exception("smtpd.auth_failed", extra={"remote": ip})
            checked = _all_temperror(sender, "checks failed")
        metrics.DMARC.labels(checked.dmarc.result).inc()
        log.info(
            "smtpd.auth",
            extra={
                "remote": ip,
                "spf": checked.spf.result if checked.spf else "none",
                "dkim": ",".join(d.result for d in checked.dkim),
                "dmarc": checked.dmarc.result,
                "policy": checked.dmarc.policy or "",
                "from_domain": checked.dmarc.domain,
                "arc": checked.arc,
            },
        )
        return checked

    def check_now(self, *, ip: str, helo: str, sender: str, text: bytes, whole: bool) -> Checked:
        """The checks, synchronously (in a worker thread); never raises for the message."""
        deadline = self._clock() + self._budget

        def seconds() -> float:
            return min(self._per_lookup, deadline - self._clock())

        txt = txt_lookup(self._resolver, seconds)
        lookup = _bounded(resolver_lookup(self._resolver), seconds)
        spf_args = {"per_lookup": self._per_lookup, "total": self._budget}
        mailfrom: SpfResult | None
        if client_address(ip) is None:  # not an IP address (a socket without one): no SPF
            mailfrom = by_helo = None
        elif sender:
            mailfrom = check_spf(ip, sender, helo, lookup, **spf_args)
            by_helo = check_spf(ip, "", helo, lookup, **spf_args) if helo else None
        else:  # RFC 7208 section 2.4: the null sender is checked as postmaster@HELO
            mailfrom = check_spf(ip, "", helo, lookup, **spf_args) if helo else None
            by_helo = None
        head = header_block(text)
        dkims = _dkim(text, head, whole, txt)
        domain = _from_domain(head)
        dmarc = check_dmarc(domain, mailfrom, dkims, txt)
        arc = _arc(text, head, whole, txt) if whole else "none"
        return Checked(mailfrom, by_helo, dkims, dmarc, arc)

    async def start(self) -> None:
        """A service component: the pool is made with the object."""

    async def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _read(message: AsyncIterable[bytes], limit: int) -> bytes:
    """At most ``limit`` bytes from the start of ``message``."""
    got = bytearray()
    iterator = aiter(message)
    try:
        async for chunk in iterator:
            got += chunk[: limit - len(got)]
            if len(got) >= limit:
                break
    finally:
        closing = getattr(iterator, "aclose", None)
        if closing is not None:
            await closing()
    return bytes(got)


def _bounded(lookup: Lookup, seconds: Callable[[], float]) -> Lookup:
    def bounded(name: str, qtype: str, strict: bool, timeout: float) -> list[Any]:
        left = seconds()
        if left <= 0:
            raise spf.TempError("time for DNS lookups spent")
        return lookup(name, qtype, strict, min(timeout, left))

    return bounded


def _dkim(text: bytes, head: bytes, whole: bool, txt: TxtLookup) -> list[DkimResult]:
    if whole or not _ends(head):
        return verify_dkim(text, txt)  # a header block without end: permerror there
    if _DKIM_FIELD.search(head):
        return [DkimResult("policy", reason=f"message larger than {VERIFY_BYTES} bytes")]
    return [DkimResult("none")]


def _ends(head: bytes) -> bool:
    return head.endswith((b"\n\n", b"\r\n\r\n"))


def _from_domain(head: bytes) -> str:
    if not _ends(head):
        return ""  # the From field cannot be known for sure: DMARC permerror
    try:
        return from_domain(head) or ""
    except (ValueError, TypeError, UnicodeError, IndexError):
        return ""


def _arc(text: bytes, head: bytes, whole: bool, txt: TxtLookup) -> str:
    """The ARC chain's validation (RFC 8617 section 5.2): none, pass, fail or temperror."""
    if not whole or not _ends(head) or not _ARC_FIELD.search(head):
        return "none"
    temporary: list[str] = []

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            found = txt(name.decode("ascii", "replace"))
        except DnsTemporary as err:
            temporary.append(str(err))
            raise dkim.DnsTimeoutError(str(err)) from err
        return found[0].encode() if found else None

    try:
        cv, _results, _reason = dkim.arc_verify(text, logger=_quiet, dnsfunc=dnsfunc)
    except Exception:  # dkimpy raises many kinds for a broken chain: it does not validate
        return "temperror" if temporary else "fail"
    if temporary and cv != dkim.CV_Pass:
        return "temperror"
    word = cv.decode("ascii", "replace") if isinstance(cv, bytes) else str(cv)
    return word if word in ("none", "pass", "fail") else "fail"


def _all_temperror(sender: str, reason: str) -> Checked:
    identity = "mailfrom" if sender else "helo"
    return Checked(
        SpfResult("temperror", reason, identity, ""),
        None,
        [DkimResult("temperror", reason=reason)],
        DmarcResult("temperror", "", reason=reason),
        "none",
    )
