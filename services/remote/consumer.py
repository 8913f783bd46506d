"""remote's adapter: ``qmesh.job.remote`` in, deliveries, one ``qmesh.result.remote`` per job out.

Jobs of one message, sender and recipient domain that arrive together share one SMTP
transaction (REMOTE-40, :func:`batch_key`); each still gets its own result (REMOTE-32).

The handler takes the current controls (REMOTE-02), chooses the route (REMOTE-10, QMTP-30),
reads the queued body, finds the addresses to try (REMOTE-13..16), connects to them in order
with the shared timeout memory (REMOTE-20..22), speaks SMTP or QMTP, and publishes the result
before it returns, so the job is acknowledged only once its result is durable. Every mail
failure becomes a ``deferred`` or ``failed`` result; a bug becomes ``deferred`` with its
traceback logged (STYLE section 8).

Each recipient is claimed in the delivery ledger (:mod:`qmesh.bus.ledger`) before its
transaction and its final outcome recorded after it, so a job published twice is answered from
the record instead of delivered twice (hardening #10). Once a transaction has run, its record
and its result are retried until NATS takes them (a lost connection comes back), never given
up while the service runs; and no transaction starts while NATS is disconnected (the consumer
leaves such a job to be delivered again).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Hashable
from dataclasses import dataclass, replace

import dns.asyncresolver

from qmesh.bus.base import Publisher
from qmesh.bus.ledger import Ledger, until_done
from qmesh.contract import subjects
from qmesh.contract.envelope import DOUBLE_BOUNCE_SENDER, split_address
from qmesh.contract.errors import Permanent, Temporary
from qmesh.contract.events import RemoteJob, Result
from qmesh.contract.outcome import Outcome, result_log_level
from qmesh.control.values import Controls
from qmesh.store.base import BlobStore
from qmesh.tlspolicy.mtasts import Policy
from services.remote import client, metrics, qmtp, report, tlsrpt
from services.remote.client import Attempt, Letter, Stream, TlsDemand
from services.remote.message import Message, open_message
from services.remote.mx import Target, mx_targets, relay_targets, without_self
from services.remote.routes import SMTP_PORT, BadRoute, Route, choose_route
from services.remote.sealing import Sealer, authserv_id
from services.remote.signing import Signer
from services.remote.tcpto import TimeoutMemory
from services.remote.tlsplan import TlsPlan, dane_plan
from services.remote.tlspolicy import TlsaLookupFailed, TlsPolicies

log = logging.getLogger(__name__)


def session_result(attempt: Attempt, plan: TlsPlan) -> str:
    """RFC 8460 section 4.3: the result type of one session under a policy."""
    if attempt.tls_result is not None:
        return attempt.tls_result
    if not attempt.tls:  # testing mode went on without TLS: it was not offered or refused
        return tlsrpt.STARTTLS_NOT_SUPPORTED
    return plan.degraded or tlsrpt.SUCCESS


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    report: str
    remote_host: str | None = None


def per_recipient(attempt: Attempt, address: str, count: int) -> list[Delivery]:
    return [Delivery(outcome, text, address) for outcome, text in attempt.results(count)]


def batch_key(job: RemoteJob) -> Hashable:
    """REMOTE-40: jobs that may share one transaction: one message, sender, recipient domain
    (hence one route), attempt, and the same need for SMTPUTF8."""
    domain = split_address(job.recipient)[1].lower()
    utf8 = job.smtputf8 or not (job.sender + job.recipient).isascii()
    return (job.id, job.sender, domain, job.attempt, utf8)


def opportunistic_tls() -> ssl.SSLContext:
    """REMOTE-42: TLS without a policy; the certificate need not verify."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RemoteDelivery:
    def __init__(
        self,
        *,
        bus: Publisher,
        queue: BlobStore,
        controls: Callable[[], Controls],
        resolver: dns.asyncresolver.Resolver,
        timeouts: TimeoutMemory,
        ledger: Ledger,
        interfaces: Collection[str] = (),
        smtp_port: int = SMTP_PORT,
        starttls: bool = True,
        rng: random.Random | None = None,
        signer: Signer | None = None,
        policies: TlsPolicies | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self._bus = bus
        self._queue = queue
        self._controls = controls
        self._resolver = resolver
        self._timeouts = timeouts
        self._ledger = ledger
        self._interfaces = tuple(interfaces)
        self._smtp_port = smtp_port  # MX and IP-literal deliveries; routes name their own
        self._tls = opportunistic_tls() if starttls else None
        self._rng = rng or random.Random()
        self._signer = signer  # DKIM (issue 11)
        self._policies = policies  # MTA-STS and DANE (issue 11)
        self._sealer = sealer  # ARC (issue 11)

    async def handle(self, job: RemoteJob) -> None:
        """The Consumer's handler for one job: deliver, publish the result, return (the ack)."""
        await self.handle_batch([job])

    async def handle_batch(self, jobs: list[RemoteJob]) -> None:
        """The Consumer's batch handler: jobs of one :func:`batch_key`, delivered in one
        transaction (REMOTE-40); one result per job, all published before it returns."""
        started = time.monotonic()
        unique = list({job.rcpt_index: job for job in reversed(jobs)}.values())[::-1]
        answered = await self._claim(unique)  # a job published twice may come in one fetch
        sending = [job for job in unique if job.rcpt_index not in answered]
        async with contextlib.AsyncExitStack() as claims:  # renewed while the transaction runs
            for job in sending:
                await claims.enter_async_context(self._ledger.held(job))
            done_now = await self.deliver_batch(sending) if sending else []
        elapsed = time.monotonic() - started
        for job, done in zip(sending, done_now, strict=True):
            await self._until_done(
                functools.partial(
                    self._ledger.settle, job, done.outcome, done.report, done.remote_host
                )
            )
        fresh = {job.rcpt_index: done for job, done in zip(sending, done_now, strict=True)}
        for job in jobs:
            done = fresh.get(job.rcpt_index) or answered[job.rcpt_index]
            result = Result.for_job(job, done.outcome, done.report, remote_host=done.remote_host)
            await self._until_done(functools.partial(self._publish, result))
            if job.rcpt_index in answered:
                log.info(
                    "delivery.recorded",
                    extra={"msg_id": job.id, "rcpt_index": job.rcpt_index, "outcome": done.outcome},
                )
                continue
            metrics.DELIVERIES.labels(done.outcome).inc()
            metrics.DELIVERY_SECONDS.observe(elapsed)
            log.log(
                result_log_level(done.outcome),
                "delivery.result",
                extra={
                    "msg_id": job.id,
                    "rcpt": job.recipient,
                    "rcpt_index": job.rcpt_index,
                    "attempt": job.attempt,
                    "outcome": done.outcome,
                    "remote": done.remote_host,
                    "report": result.report[:300],
                    "batch": len(jobs),
                    "duration_ms": int(elapsed * 1000),
                },
            )

    async def _claim(self, jobs: list[RemoteJob]) -> dict[int, Delivery]:
        """Claim every recipient; those delivered before are answered from their record.

        If one cannot be claimed now, the claims taken are given back and the batch deferred.
        """
        answered: dict[int, Delivery] = {}
        claimed: list[RemoteJob] = []
        try:
            for job in jobs:
                recorded = await self._ledger.claim(job)
                if recorded is None:
                    claimed.append(job)
                else:
                    answered[job.rcpt_index] = Delivery(
                        recorded.outcome, recorded.report, recorded.remote_host
                    )
        except Temporary:
            for job in claimed:
                await self._ledger.release(job)
            raise
        return answered

    async def _until_done(self, step: Callable[[], Awaitable[None]]) -> None:
        await until_done(step, "remote.report_retry")

    async def _publish(self, result: Result) -> None:
        await self._bus.publish(subjects.result("remote"), result.encode(), msg_id=result.msg_id())

    async def deliver(self, job: RemoteJob) -> Delivery:
        """The outcome and report of one delivery; never raises for mail trouble."""
        return (await self.deliver_batch([job]))[0]

    async def deliver_batch(self, jobs: list[RemoteJob]) -> list[Delivery]:
        """One delivery per job (jobs of one :func:`batch_key`); never raises for mail trouble."""
        try:
            return await self._deliver(jobs)
        except Permanent as err:
            return [Delivery("failed", err.text)] * len(jobs)
        except Temporary as err:
            return [Delivery("deferred", err.text)] * len(jobs)
        except Exception:
            log.exception(
                "delivery.bug",
                extra={"msg_id": jobs[0].id, "rcpt_index": [j.rcpt_index for j in jobs]},
            )
            return [Delivery("deferred", report.INTERNAL)] * len(jobs)

    async def _deliver(self, jobs: list[RemoteJob]) -> list[Delivery]:
        c = self._controls()
        job = jobs[0]
        host = split_address(job.recipient)[1]
        try:
            route = choose_route(host, c.smtproutes, c.qmtproutes)
        except BadRoute as err:
            log.warning("delivery.bad_route", extra={"msg_id": job.id, "reason": str(err)})
            raise Temporary(report.bad_route(str(err))) from err
        sender = "" if job.sender == DOUBLE_BOUNCE_SENDER else job.sender  # ADDR-03
        done: dict[int, Delivery] = {}
        if route.protocol == "smtp":
            if c.helohost is None:
                raise Temporary(report.CONTROLS)  # REMOTE-34
            if any(ch in sender for ch in "\r\n"):
                raise Permanent(report.UNSENDABLE_ADDRESS)
            for index, each in enumerate(jobs):
                if any(ch in each.recipient for ch in "\r\n"):
                    done[index] = Delivery("failed", report.UNSENDABLE_ADDRESS)
        sending = [index for index in range(len(jobs)) if index not in done]
        if not sending:
            return [done[index] for index in range(len(jobs))]
        recipients = tuple(jobs[index].recipient for index in sending)
        message = await open_message(self._queue, job.id)
        if self._signer is not None:
            message = await self._signer.sign(message, sender, job.id)
        if self._sealer is not None:  # after DKIM: the ARC set goes on top (RFC 8617)
            message = await self._sealer.seal(message, authserv_id(c), job.id)
        letter = Letter(
            sender=sender,
            recipients=recipients,
            smtputf8=any(j.smtputf8 for j in jobs) or not (sender + "".join(recipients)).isascii(),
            eightbit=message.eightbit,
            wire_size=message.wire_size,
            chunks=message.chunks,
        )
        targets, port = await self._targets(route, host, c)
        log.debug(
            "delivery.route",
            extra={
                "msg_id": job.id,
                "protocol": route.protocol,
                "targets": len(targets),
                "recipients": len(recipients),
            },
        )
        if route.protocol == "qmtp":  # one package per recipient
            sent = [
                await self._qmtp(targets, port, replace(letter, recipients=(r,)), message, c)
                for r in recipients
            ]
        else:
            assert c.helohost is not None
            sts = None
            if route.relay is None and self._policies is not None:
                sts = await self._policies.mta_sts(host)  # RFC 8461: MX deliveries only
            mx_domain = host if route.relay is None else ""  # routes name their relays
            sent = await self._smtp(targets, port, letter, c, c.helohost, mx_domain, sts)
        done.update(zip(sending, sent, strict=True))
        return [done[index] for index in range(len(jobs))]

    async def _targets(self, route: Route, host: str, c: Controls) -> tuple[list[Target], int]:
        if route.relay is None:
            if not host:
                raise Permanent(report.no_host(host))
            targets = await mx_targets(self._resolver, host, self._rng)
            return without_self(targets, c.own_addresses(self._interfaces)), self._smtp_port
        relay = route.relay
        if relay.address:  # REMOTE-12: a route is never ambiguous MX
            return [Target(relay.host, 0, relay.host)], relay.port
        return await relay_targets(self._resolver, relay.host), relay.port

    async def _connect(self, target: Target, port: int, c: Controls) -> Stream | None:
        """REMOTE-20, REMOTE-22: a connection, or None after a skip, timeout or refusal."""
        address = target.address
        if await self._timeouts.skip(address):
            metrics.CONNECTIONS.labels("skipped").inc()
            return None
        try:
            stream = await Stream.open(
                address,
                port,
                connect_timeout=max(1, c.timeoutconnect),
                io_timeout=max(1, c.timeoutremote),
            )
        except TimeoutError:
            metrics.CONNECTIONS.labels("timeout").inc()
            log.info("remote.connect_timeout", extra={"remote": address, "port": port})
            await self._timeouts.timed_out(address)
            return None
        except OSError as err:
            metrics.CONNECTIONS.labels("refused").inc()
            log.info(
                "remote.connect_failed",
                extra={"remote": address, "port": port, "reason": str(err) or repr(err)},
            )
            await self._timeouts.connected(address)  # a refusal clears the record
            return None
        metrics.CONNECTIONS.labels("connected").inc()
        await self._timeouts.connected(address)
        return stream

    async def _smtp(
        self,
        targets: list[Target],
        port: int,
        letter: Letter,
        c: Controls,
        helohost: str,
        domain: str = "",
        sts: Policy | None = None,
    ) -> list[Delivery]:
        """One delivery per recipient of ``letter`` (REMOTE-32)."""
        last: tuple[Attempt, str] | None = None
        skipped: list[str] = []  # why each MX was not tried
        for target in targets:
            plan = await self._tls_plan(domain, target, port, sts)
            if isinstance(plan, str):
                skipped.append(plan)
                continue
            attempt = await self._smtp_once(
                target, port, letter, c, helohost, plan.context, plan.demand
            )
            if attempt is not None and plan.label is not None:
                policy, mode = plan.label
                result = "ok" if attempt.tls else "failed"
                metrics.TLS_POLICY.labels(policy, mode, result).inc()
                tlsrpt.record(policy, session_result(attempt, plan), domain=domain, mx=target.name)
                if result == "failed":
                    log.info(
                        "remote.tls_policy_failed",
                        extra={"remote": target.address, "policy": policy, "mode": mode},
                    )
            if attempt is not None and attempt.tls_failed:  # REMOTE-42: once more, in plaintext
                log.info("remote.tls_failed", extra={"remote": target.address})
                attempt = await self._smtp_once(target, port, letter, c, helohost, None) or attempt
            if attempt is None:
                continue
            if attempt.next_address:
                last = (attempt, target.address)
                continue
            return per_recipient(attempt, target.address, len(letter.recipients))
        if last is not None:
            return per_recipient(last[0], last[1], len(letter.recipients))
        if skipped and len(skipped) == len(targets):  # no MX the policies allow
            return [Delivery("deferred", skipped[-1])] * len(letter.recipients)
        return [Delivery("deferred", report.NO_CONNECTION)] * len(letter.recipients)  # REMOTE-21

    async def _tls_plan(
        self, domain: str, target: Target, port: int, sts: Policy | None
    ) -> TlsPlan | str:
        """How to connect to ``target``; a report text: a policy forbids it (MTA-STS
        enforce, RFC 8461 section 4.1; a failed TLSA lookup, RFC 7672 section 2.2)."""
        plain = TlsPlan(self._tls)
        if self._policies is None or not domain or target.name == target.address:
            return plain
        try:
            tlsa = await self._policies.dane(domain, target.name, port)
        except TlsaLookupFailed as err:
            tlsrpt.record("dane", tlsrpt.DNSSEC_INVALID, domain=domain, mx=target.name)
            log.info("remote.tlsa_lookup_failed", extra={"domain": domain, "reason": str(err)})
            return report.tlsa_unavailable(target.name)
        if tlsa is not None:  # RFC 8461 section 2: DANE wins over MTA-STS
            return dane_plan(target.name, tlsa)
        if sts is None or sts.mode == "none":
            return plain
        if not sts.allows(target.name):
            metrics.TLS_POLICY.labels("mta-sts", sts.mode, "mx_mismatch").inc()
            tlsrpt.record("mta-sts", tlsrpt.VALIDATION_FAILURE, domain=domain, mx=target.name)
            log.info(
                "remote.tls_policy_mx_mismatch",
                extra={"remote": target.name, "domain": domain, "mode": sts.mode},
            )
            return report.no_policy_mx(domain) if sts.mode == "enforce" else plain
        if sts.mode == "enforce":
            demand = TlsDemand(f"the MTA-STS policy of {domain}")
            return TlsPlan(self._policies.context, demand, ("mta-sts", "enforce"))
        return TlsPlan(self._policies.context, None, ("mta-sts", "testing"))

    async def _smtp_once(
        self,
        target: Target,
        port: int,
        letter: Letter,
        c: Controls,
        helohost: str,
        tls: ssl.SSLContext | None,
        demand: TlsDemand | None = None,
    ) -> Attempt | None:
        stream = await self._connect(target, port, c)
        if stream is None:
            return None
        server_name = None if target.name == target.address else target.name
        return await client.transaction(
            stream,
            target.address,
            helohost=helohost,
            letter=letter,
            tls=tls,
            server_name=server_name,
            demand=demand,
        )

    async def _qmtp(
        self, targets: list[Target], port: int, letter: Letter, message: Message, c: Controls
    ) -> Delivery:
        last: tuple[Attempt, str] | None = None
        for target in targets:
            stream = await self._connect(target, port, c)
            if stream is None:
                continue
            attempt = await qmtp.transaction(
                stream, target.address, letter=letter, size=message.size
            )
            if attempt.next_address:
                last = (attempt, target.address)
                continue
            return Delivery(attempt.outcome, attempt.report, target.address)
        if last is not None:
            return Delivery(last[0].outcome, last[0].report, last[1])
        return Delivery("deferred", report.NO_QMTP_CONNECTION)
