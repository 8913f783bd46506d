"""lists' adapter: one ``qmesh.job.lists`` in, the list's answer out through ``enqueue()``.

ezmlm's programs in one handler (issue #15): ezmlm-send (posts), ezmlm-reject and ezmlm-store
(subscribers-only and moderated lists), ezmlm-moderate (accept/reject), ezmlm-manage
(subscribe, unsubscribe, confirmations, help), ezmlm-return and ezmlm-warn (bounces, probes)
and ezmlm-get (archive). What to do is decided by the pure modules (:mod:`request`,
:mod:`cookie`, :mod:`post`, :mod:`bounce`, :mod:`replies`); this module reads and writes
the state and queues messages. A post is one ``enqueue()`` with every subscriber as a
recipient. The list's own notices (refusals) go out with the null sender, so they can never
start a loop; confirmation requests and probes come from ``LIST-return-...@DOMAIN``, whose
bounces come back here and are counted, never answered.

A job is carried out once: ``lists.<id>.<index>`` in KV ``qmesh_deliveries`` is written after
the messages are queued, and a redelivered job that finds it only cleans up (the window between
the two is ARCH-03's one duplicate).
"""

from __future__ import annotations

import contextlib
import email.policy
import email.utils
import hmac
import logging
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser

from nats.js.kv import KeyValue

from qmesh.bus.base import Publisher
from qmesh.contract.envelope import DOUBLE_BOUNCE_SENDER
from qmesh.contract.errors import QueueFailure, Temporary
from qmesh.contract.events import Origin
from qmesh.contract.queue import enqueue
from qmesh.lists import oneclick, state
from qmesh.lists.address import address_problem, canonical
from qmesh.lists.events import ListJob
from qmesh.lists.names import archive_key, held_key
from qmesh.lists.records import ListRecord
from qmesh.store.base import BlobNotFound, BlobStore, StoreUnavailable
from services.lists import bounce, cookie, digest, metrics, post, replies
from services.lists.dmarc import DmarcCheck
from services.lists.request import Request, parse

log = logging.getLogger(__name__)

NOT_STORED = "Unable to queue the list's message. (#4.3.0)"
PROGRESS_EVERY = 50  # personal copies queued between notes of how far a fan-out got
ORIGIN = Origin(kind="alias")


class Lists:
    def __init__(
        self,
        *,
        bus: Publisher,
        queue: BlobStore,
        directory: Callable[[], KeyValue],
        kv: Callable[[], KeyValue],
        deliveries: Callable[[], KeyValue],
        dmarc: DmarcCheck,
        clock: Callable[[], float] = time.time,
        one_click_base: str | None = None,
        progress_every: int = PROGRESS_EVERY,
    ) -> None:
        self._bus = bus
        self._queue = queue
        self._directory = directory
        self._kv = kv
        self._deliveries = deliveries
        self._clock = clock
        self._one_click_base = one_click_base  # admin's outside address (RFC 8058)
        self._dmarc = dmarc
        self._progress_every = progress_every

    # -- the consumer's handler -------------------------------------------------------------

    async def handle(self, job: ListJob) -> None:
        done = self._deliveries()
        job_key = f"{job.id}.{job.rcpt_index}"
        if not await state.is_done(done, job_key):
            try:
                message = await self._queue.get(job.body)
            except BlobNotFound:
                log.error("lists.body_missing", extra={"msg_id": job.id, "key": job.body})
                return  # nothing to act on; the event is acked
            except StoreUnavailable as err:
                raise Temporary("Unable to read the message. (#4.3.0)") from err
            record = await state.ListDirectory(self._directory()).get(job.domain, job.name)
            request = parse(job.ext)
            if record is None:
                await self._notice_no_list(job)
                result = "no_list"
            else:
                result = await self._act(record, request, job, message)
            metrics.REQUESTS.labels(request.kind, result).inc()
            log.info(
                "lists.handled",
                extra={
                    "msg_id": job.id,
                    "list": f"{job.name}@{job.domain}",
                    "request": request.kind,
                    "result": result,
                },
            )
            await state.mark_done(done, job_key)
        with contextlib.suppress(BlobNotFound, StoreUnavailable):
            await self._queue.delete(job.body)

    async def _act(self, record: ListRecord, req: Request, job: ListJob, message: bytes) -> str:
        if req.kind == "post":
            return await self._post(record, job, message)
        if req.kind == "return":
            return await self._return(record, req, job, message)
        if not _answerable(job.sender):
            return "ignored_bounce"  # never answer a bounce (RFC 3834)
        if req.kind in ("subscribe", "unsubscribe"):
            return await self._request(record, req, job)
        if req.kind == "confirm":
            return await self._confirm(record, req, job)
        if req.kind == "moderate":
            return await self._moderate(record, req, job)
        if req.kind == "owner":
            return await self._owner(record, job, message)
        if req.kind == "get":
            return await self._get(record, req, job)
        await self._reply(record, job.sender, *_help(record))
        return "help"

    # -- sending ---------------------------------------------------------------------------

    async def _send(self, sender: str, recipients: list[str], body: bytes) -> None:
        try:
            await enqueue(
                self._queue,
                self._bus,
                sender=sender,
                recipients=recipients,
                body=body,
                origin=ORIGIN,
            )
        except QueueFailure as err:
            raise Temporary(NOT_STORED) from err

    async def _reply(
        self,
        record: ListRecord,
        to: str,
        subject: str,
        text: str,
        *,
        sender: str | None = None,
        reply_to: str | None = None,
        subscriber: bool = False,
    ) -> None:
        """``subscriber``: ``to`` is on the list, and the message offers RFC 8058's one-click
        unsubscribe (when admin serves it) besides the unsubscribe address."""
        one_click = await self._one_click(record, to) if subscriber else None
        body = replies.message(
            record,
            to,
            subject,
            text,
            reply_to=reply_to,
            when=self._clock(),
            one_click=one_click,
        )
        await self._send(record.at("return-") if sender is None else sender, [to], body)

    async def _one_click(self, record: ListRecord, address: str) -> str | None:
        if not self._one_click_base:
            return None
        key = await state.cookie_key(self._kv())
        token = oneclick.make(key, record.address, address, self._clock())
        return oneclick.url(self._one_click_base, token)

    async def _refuse(self, record: ListRecord, job: ListJob, why: str) -> str:
        """A refusal, to the envelope sender, from the null sender (never answered)."""
        if _answerable(job.sender) and address_problem(job.sender) is None:
            await self._reply(record, job.sender, *replies.refusal(record, why), sender="")
        log.info("lists.refused", extra={"msg_id": job.id, "list": record.address, "reason": why})
        return "refused"

    async def _notice_no_list(self, job: ListJob) -> None:
        if _answerable(job.sender) and address_problem(job.sender) is None:
            text = (
                f"There is no list {job.name}@{job.domain} any more; your message was not sent.\n"
            )
            body = (
                f"From: MAILER-DAEMON@{job.domain}\nTo: {job.sender}\nSubject: no such list\n"
                f"Auto-Submitted: auto-replied\n\n{text}"
            ).encode()
            await self._send("", [job.sender], body)

    # -- subscriptions ---------------------------------------------------------------------

    async def _request(self, record: ListRecord, req: Request, job: ListJob) -> str:
        if req.digest and not record.digest:
            return await self._refuse(record, job, "this list has no digest")
        target = job.sender if req.target is None else req.target
        problem = address_problem(target)
        if problem is not None:
            return await self._refuse(
                record, job, f"{problem}, so it cannot be subscribed or unsubscribed"
            )
        target = canonical(target)
        leaving = req.kind == "unsubscribe"
        action = {
            (False, False): "sc",
            (True, False): "uc",
            (False, True): "dc",
            (True, True): "du",
        }[(leaving, req.digest)]
        key = await state.cookie_key(self._kv())
        ext = cookie.confirm_ext(key, action, record.address, target, self._clock())
        confirm = record.at(ext)
        subject, text = replies.confirm_request(
            record, target, confirm, leaving=leaving, digest=req.digest
        )
        # to the address concerned, never to whoever asked (no third-party subscriptions)
        await self._reply(record, target, subject, text, reply_to=confirm)
        return "confirm_sent"

    async def _confirm(self, record: ListRecord, req: Request, job: ListJob) -> str:
        key = await state.cookie_key(self._kv())
        checked = cookie.check(key, req.action, record.address, req.rest, self._clock())
        if checked.target is None:
            return await self._refuse(
                record, job, checked.problem or "the confirmation is not valid"
            )
        leaving = req.action in ("uc", "du")
        which = "digest" if req.digest else "sub"
        changed = await state.subscribe(
            self._kv(), record.address, checked.target, which, add=not leaving
        )
        await self._reply(
            record,
            checked.target,
            *replies.done(record, checked.target, leaving=leaving, changed=changed),
            subscriber=not leaving,
        )
        log.info(
            "lists.unsubscribed" if leaving else "lists.subscribed",
            extra={"list": record.address, "which": which, "changed": changed},
        )
        return "unsubscribed" if leaving else "subscribed"

    # -- posts -----------------------------------------------------------------------------

    async def _post(self, record: ListRecord, job: ListJob, message: bytes) -> str:
        fields, _ = post.split(message)
        if post.is_loop(fields, record):
            return await self._refuse(
                record, job, "the message is looping: it has been through this list already"
            )
        if not _answerable(job.sender):
            return "ignored_bounce"  # a bounce sent to the posting address is never posted
        if record.subscribers_only or record.moderated:
            subs = await state.subscribers(self._kv(), record.address)
            known = (
                subs.has(job.sender)
                or subs.has(job.sender, "digest")
                or any(m.lower() == job.sender.lower() for m in record.moderators)
            )
            if record.subscribers_only and not known:
                return await self._refuse(
                    record, job, f"only subscribers may post, and {job.sender} is not subscribed"
                )
        if record.moderated:
            return await self._hold(record, job, message)
        return await self._distribute(record, message, f"{job.id}.{job.rcpt_index}")

    async def _hold(self, record: ListRecord, job: ListJob, message: bytes) -> str:
        held_id = f"{job.id}.{job.rcpt_index}"
        await self._queue.put(held_key(record.address, held_id), message)
        await state.hold(
            self._kv(), record.address, held_id, {"sender": job.sender, "at": self._clock()}
        )
        key = await state.cookie_key(self._kv())
        code = f"{held_id}.{cookie.moderation_mac(key, record.address, held_id)}"
        subject, text = replies.moderation_request(
            record, job.sender, record.at(f"accept-{code}"), record.at(f"reject-{code}")
        )
        moderators = list(record.moderators) or ([record.owner] if record.owner else [])
        for moderator in moderators:
            await self._reply(
                record, moderator, subject, text, reply_to=record.at(f"accept-{code}")
            )
        return "held"

    async def _moderate(self, record: ListRecord, req: Request, job: ListJob) -> str:
        held_id, _, given = req.rest.rpartition(".")
        key = await state.cookie_key(self._kv())
        if not held_id or not _same_mac(cookie.moderation_mac(key, record.address, held_id), given):
            return await self._refuse(record, job, "the moderation code is not valid for this list")
        held = await state.take_held(self._kv(), record.address, held_id)
        if held is None:
            return await self._refuse(
                record, job, "that message has been accepted or rejected already"
            )
        body_key = held_key(record.address, held_id)
        message = await self._queue.get(body_key)
        if req.action == "accept":
            await self._distribute(record, message, f"{job.id}.{job.rcpt_index}")
            result = "accepted"
        else:
            poster = str(held.get("sender", ""))
            if address_problem(poster) is None:
                subject, text = replies.refusal(record, "a moderator rejected your message")
                await self._reply(record, poster, subject, text, sender="")
            result = "rejected"
        await self._queue.delete(body_key)
        return result

    async def _distribute(self, record: ListRecord, message: bytes, job_key: str) -> str:
        subs = await state.subscribers(self._kv(), record.address)
        number = await state.next_number(self._kv(), record.address)
        fields, _ = post.split(message)
        found = post.author(fields)
        rewrite = found is not None and await self._dmarc(post.domain_of(found[1]))
        # one body for every subscriber: it cannot carry a one-click address naming its reader
        # (a personal list gives each subscriber a copy that does, below)
        body = post.compose(record, message, dmarc_rewrite=rewrite)
        if record.archive or record.digest:
            await self._queue.put(archive_key(record.address, number), body)
        if record.digest:
            await self._digest(record, number)
        recipients = list(subs.sub)
        if not recipients:
            return "posted_to_nobody"
        sender = record.at(f"return-{number}-") + ("-@[]" if record.verp or record.personal else "")
        if record.personal:
            await self._send_personal(record, job_key, sender, recipients, message, rewrite)
        else:
            await self._send(sender, recipients, body)
        metrics.POSTS.inc()
        metrics.RECIPIENTS.inc(len(recipients))
        log.info(
            "lists.posted",
            extra={
                "list": record.address,
                "number": number,
                "rcpt_count": len(recipients),
                "dmarc_rewrite": rewrite,
            },
        )
        return "posted"

    async def _send_personal(
        self,
        record: ListRecord,
        job_key: str,
        sender: str,
        recipients: list[str],
        message: bytes,
        rewrite: bool,
    ) -> None:
        """Mailman's personalized delivery: one copy per subscriber, each with its own RFC 8058
        one-click link. How far the fan-out got is noted every ``PROGRESS_EVERY`` copies, so a
        job taken up again after a crash resends at most that many."""
        done = self._deliveries()
        key = await state.cookie_key(self._kv()) if self._one_click_base else b""
        start = await state.progress(done, job_key)
        for i in range(start, len(recipients)):
            address = recipients[i]
            url = None
            if self._one_click_base:
                token = oneclick.make(key, record.address, address, self._clock())
                url = oneclick.url(self._one_click_base, token)
            body = post.compose(record, message, dmarc_rewrite=rewrite, unsubscribe_url=url)
            await self._send(sender, [address], body)
            if (i + 1) % self._progress_every == 0 and i + 1 < len(recipients):
                await state.set_progress(done, job_key, i + 1)

    async def _digest(self, record: ListRecord, number: int) -> None:
        """ezmlm-tstdig and ezmlm-get -d: after a post, send the digest if it is due."""
        due = await state.digest_due(
            self._kv(),
            record.address,
            number,
            self._clock(),
            record.digest_every,
            record.digest_hours,
        )
        await self._send_digest(record, due, "post")

    async def _send_digest(self, record: ListRecord, due: list[int], why: str) -> None:
        """Send the posts ``due`` (just taken from the waiting numbers) to the digest
        subscribers; if they cannot be queued, the numbers wait again for the next try."""
        if not due:
            return
        subs = await state.subscribers(self._kv(), record.address)
        if not subs.digest:
            return
        posts: list[tuple[int, bytes]] = []
        try:
            for n in due:
                with contextlib.suppress(BlobNotFound):
                    posts.append((n, await self._queue.get(archive_key(record.address, n))))
            if not posts:
                return
            issue = await state.digest_issue(self._kv(), record.address)
            body = digest.compose(record, posts, self._clock(), issue)
            await self._send(record.at("return-digest-"), list(subs.digest), body)
        except (Temporary, StoreUnavailable):
            await state.digest_requeue(self._kv(), record.address, due)
            raise
        metrics.DIGESTS.labels(why).inc()
        log.info(
            "lists.digest_sent",
            extra={
                "list": record.address,
                "posts": len(posts),
                "rcpt_count": len(subs.digest),
                "why": why,
                "format": record.digest_format,
            },
        )

    # -- the timer (ezmlm-get -d from cron, ezmlm-clean) -----------------------------------

    async def sweep(self) -> None:
        """One round of the timer over every list: a digest whose oldest post has waited
        ``digest_hours`` goes out though no post arrives, and a held post no moderator decided
        on within ``moderation_hours`` goes back to its poster. Every replica may run rounds;
        each digest and each held post is taken by a compare-and-set, so one replica acts."""
        for record in await state.ListDirectory(self._directory()).all():
            try:
                if record.digest:
                    due = await state.digest_overdue(
                        self._kv(), record.address, self._clock(), record.digest_hours
                    )
                    await self._send_digest(record, due, "timer")
                if record.moderated:
                    await self._expire_held(record)
            except Temporary as err:
                log.warning(
                    "lists.sweep_failed", extra={"list": record.address, "reason": str(err)}
                )

    async def _expire_held(self, record: ListRecord) -> None:
        now = self._clock()
        for held_id, doc in (await state.held(self._kv(), record.address)).items():
            try:
                at = float(doc.get("at", now))
            except (TypeError, ValueError):
                at = 0.0
            if now - at < record.moderation_hours * 3600:
                continue
            if await state.take_held(self._kv(), record.address, held_id) is None:
                continue  # another replica, or a moderator, came first
            poster = str(doc.get("sender", ""))
            body_key = held_key(record.address, held_id)
            if _answerable(poster) and address_problem(poster) is None:
                try:
                    original: bytes | None = await self._queue.get(body_key)
                except BlobNotFound:
                    original = None
                why = f"no moderator accepted your message within {record.moderation_hours:g} hours"
                await self._send("", [poster], self._returned(record, poster, why, original))
            with contextlib.suppress(BlobNotFound, StoreUnavailable):
                await self._queue.delete(body_key)
            metrics.REQUESTS.labels("moderate", "expired").inc()
            log.info("lists.held_expired", extra={"list": record.address, "held": held_id})

    def _returned(self, record: ListRecord, to: str, why: str, original: bytes | None) -> bytes:
        """ezmlm-clean -m: the refusal with the post enclosed as a MIME part."""
        subject, text = replies.refusal(record, why)
        reply = EmailMessage()
        reply["From"] = record.at("help")
        reply["To"] = to
        reply["Subject"] = subject
        reply["Date"] = email.utils.formatdate(self._clock())
        reply["Auto-Submitted"] = "auto-replied"
        reply["List-Id"] = f"<{post.list_id(record)}>"
        reply.set_content(text)
        if original is not None:
            reply.add_attachment(BytesParser(policy=email.policy.default).parsebytes(original))
        return reply.as_bytes(policy=email.policy.SMTP.clone(linesep="\n"))

    # -- bounces ---------------------------------------------------------------------------

    async def _return(self, record: ListRecord, req: Request, job: ListJob, message: bytes) -> str:
        addresses = [req.target] if req.target else bounce.bounced(message)
        subs = await state.subscribers(self._kv(), record.address)
        counted = "ignored"
        for address in addresses:
            if address is None or not (subs.has(address) or subs.has(address, "digest")):
                continue
            if req.action == "probe":
                await state.subscribe(self._kv(), record.address, address, "sub", add=False)
                await state.subscribe(self._kv(), record.address, address, "digest", add=False)
                await state.edit_bounce(self._kv(), record.address, address, lambda d: None)
                metrics.BOUNCES.labels("removed").inc()
                log.info("lists.removed_bouncing", extra={"list": record.address})
                counted = "removed"
                continue
            decision: list[bounce.Decision] = []

            def change(
                doc: dict[str, object], _d: list[bounce.Decision] = decision
            ) -> dict[str, object]:
                if req.action == "warn":
                    d = bounce.on_warning_bounce(doc, self._clock())
                else:
                    d = bounce.on_bounce(doc, self._clock(), record.bounce_period, req.number)
                _d[:] = [d]
                return d.record

            await state.edit_bounce(self._kv(), record.address, address, change)
            action = decision[0].action if decision else "count"
            if action in ("warn", "probe"):
                if action == "warn":
                    posts = [int(n) for n in decision[0].record.get("posts", [])]
                    subject, text = replies.warning(record, address, posts)
                else:
                    subject, text = replies.probe(record, address)
                body = replies.message(
                    record,
                    address,
                    subject,
                    text,
                    when=self._clock(),
                    one_click=await self._one_click(record, address),
                )
                await self._send(record.at(f"return-{action}-") + "-@[]", [address], body)
                result = "warned" if action == "warn" else "probed"
                metrics.BOUNCES.labels(result).inc()
                counted = result
            else:
                metrics.BOUNCES.labels("counted").inc()
                counted = "counted" if counted == "ignored" else counted
        return counted

    # -- owner, archive --------------------------------------------------------------------

    async def _owner(self, record: ListRecord, job: ListJob, message: bytes) -> str:
        to = record.owner or f"postmaster@{record.domain}"
        await self._send(job.sender, [to], message)
        return "to_owner"

    async def _get(self, record: ListRecord, req: Request, job: ListJob) -> str:
        if not record.archive:
            return await self._refuse(record, job, "this list keeps no archive")
        assert req.number is not None
        try:
            archived = await self._queue.get(archive_key(record.address, req.number))
        except BlobNotFound:
            return await self._refuse(
                record, job, f"there is no message {req.number} in the archive"
            )
        reply = EmailMessage()
        reply["From"] = record.at("help")
        reply["To"] = job.sender
        reply["Subject"] = f"{record.address} archive message {req.number}"
        reply["Auto-Submitted"] = "auto-replied"
        reply["List-Id"] = f"<{post.list_id(record)}>"
        reply.set_content(f"Message {req.number} of {record.address} is attached.\n")
        reply.add_attachment(BytesParser(policy=email.policy.default).parsebytes(archived))
        await self._send(
            record.at("return-"),
            [job.sender],
            reply.as_bytes(policy=email.policy.SMTP.clone(linesep="\n")),
        )
        return "archive_sent"


def _answerable(sender: str) -> bool:
    return sender not in ("", DOUBLE_BOUNCE_SENDER) and not sender.lower().startswith(
        "mailer-daemon@"
    )


def _same_mac(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b.lower())


def _help(record: ListRecord) -> tuple[str, str]:
    return f"help for {record.address}", replies.help_text(record)
