"""webmail's pages: one account's folders and messages, after that account logs in (issue 14).

Every page reads and changes mail through the shared mailbox model (:mod:`qmesh.mailbox`), as
imapd does, so IMAP, POP3 and the browser agree on UIDs and flags. The mailbox a request sees
is always the logged-in account's: a folder name or UID from the URL is looked up only there,
so another account's message is "no such message". Passwords are checked by the directory's
authenticator behind :class:`qmesh.limits.logins.Throttle` (same slow hash and same reply for
an unknown account and a wrong password; failures counted cluster-wide). Every form carries
the session's CSRF token; the login form a token of its own cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, getaddresses
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from prometheus_client import Counter
from starlette.datastructures import UploadFile

from qmesh.contract.errors import QueueFailure, Temporary
from qmesh.control import Controls
from qmesh.directory import admin
from qmesh.directory.authenticate import Account, DirectoryAuthenticator
from qmesh.directory.errors import DirectoryError
from qmesh.directory.namespaces import Target
from qmesh.directory.store import Directory
from qmesh.limits.logins import Throttle
from qmesh.mailbox.flags import ANSWERED, FLAGGED, SEEN
from qmesh.mailbox.folders import INBOX, BadFolderName, check_name
from qmesh.mailbox.index import Entry, FlagMode, FolderIndex
from qmesh.mailbox.sync import AccountMailbox, FolderExists, FolderMissing
from qmesh.store.base import BlobNotFound, StoreUnavailable
from qmesh.web.forms import BadForm, parse_form
from qmesh.web.pages import Denied, add_error_pages, see_other
from qmesh.web.security import CSP, set_cookie
from qmesh.web.sessions import (
    SESSION_LIFETIME,
    SessionRecord,
    Sessions,
    new_token,
    tokens_match,
)
from services.webmail import reading
from services.webmail.send import Attachment, BadMessage, Draft, Sender, build, recipients

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "qmesh_webmail"
LOGIN_COOKIE = "qmesh_webmail_login"
LOGIN_COOKIE_AGE = 3600
FAILED_LOGIN = "Login failed: wrong address or password."
PAGE_SIZE = 20
SORTS = ("date", "from", "subject")
SEARCH_IN = ("subject", "from", "body")
TRASH, SENT = "Trash", "Sent"
READ_CONCURRENCY = 8
# what one message from the browser may be at most, whatever databytes allows: the upload, the
# attachments and the encoded message are all held in memory at once (the chart gives 512 MiB)
UPLOAD_CAP = 20 * 1024 * 1024
MAX_FILES = 10
T = TypeVar("T")
IMAGES_CSP = CSP.replace("img-src 'self'", "img-src 'self' https: http:")

LOGINS = Counter("qmesh_webmail_logins_total", "webmail logins", ["result"])
SENT_TOTAL = Counter("qmesh_webmail_sent_total", "Messages sent from webmail", ["result"])


@dataclass
class Ports:
    """What the pages work with; each callable raises ``Temporary`` while NATS is away."""

    directory: Callable[[], Directory]
    mailbox: Callable[[str, str], AccountMailbox]
    sessions: Sessions
    authenticator: DirectoryAuthenticator
    throttle: Throttle
    sender: Sender
    controls: Callable[[], Controls]
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Who:
    account: Account
    session: SessionRecord

    @property
    def address(self) -> str:
        return str(self.account)


@dataclass(frozen=True)
class Row:
    uid: int
    seen: bool
    flagged: bool
    answered: bool
    size: int
    summary: reading.Summary
    when: int = 0

    @property
    def date(self) -> str:
        """The Date field, or the arrival time when the message has none."""
        return self.summary.date or arrival(self.when)


def arrival(when: int) -> str:
    return format_datetime(datetime.fromtimestamp(when, UTC)) if when else ""


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def routes(ports: Ports) -> Callable[[FastAPI], None]:
    templates = Jinja2Templates(directory=HERE / "templates")
    summaries = reading.SummaryCache()

    def page(
        request: Request, name: str, who: Who | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            name,
            {
                "who": who.address if who else None,
                "csrf": who.session.csrf if who else "",
                **context,
            },
            status_code=status,
        )

    async def who(request: Request) -> Who:
        record = await ports.sessions.get(request.cookies.get(SESSION_COOKIE))
        if record is None or record.domain is None:
            raise Denied(401, "not logged in")
        # read again on every request: an account disabled, deleted or left without a password
        # loses its sessions at once
        name, _, domain = record.login.rpartition("@")
        found = await ports.directory().get_account(domain, name)
        if found is None or not found.enabled or not found.verifier:
            raise Denied(401, "not logged in")
        return Who(Account(domain, name), record)

    def box_of(me: Who) -> AccountMailbox:
        return ports.mailbox(me.account.domain, me.account.name)

    async def form(request: Request, session: SessionRecord) -> dict[str, str]:
        fields = parse_form(await request.body())
        check_csrf(fields.get("csrf"), session)
        return fields

    def check_csrf(given: str | None, session: SessionRecord) -> None:
        if not tokens_match(given, session.csrf):
            raise Denied(403, "the form's security token is missing or wrong; reload the page")

    def folder_of(text: str | None) -> str:
        try:
            return check_name(text or INBOX)
        except BadFolderName as err:
            raise Denied(404, "no such folder") from err

    def folder_url(folder: str, **query: str | int) -> str:
        return "/mail?" + urlencode({"f": folder, **query})

    async def index_of(box: AccountMailbox, folder: str) -> FolderIndex:
        try:
            return await box.sync(folder)
        except FolderMissing as err:
            raise Denied(404, "no such folder") from err

    async def entry_of(box: AccountMailbox, folder: str, uid: int) -> Entry:
        found = (await index_of(box, folder)).by_uid().get(uid)
        if found is None:
            raise Denied(404, "no such message")
        return found[1]

    async def raw_of(box: AccountMailbox, folder: str, entry: Entry) -> bytes:
        try:
            return await box.read(folder, entry)
        except BlobNotFound as err:
            raise Denied(404, "no such message") from err

    async def summary_of(box: AccountMailbox, folder: str, entry: Entry) -> reading.Summary:
        key = box.prefix(folder) + entry.key
        found = summaries.get(key)
        if found is None:
            try:
                found = reading.summarise(await box.read(folder, entry))
            except BlobNotFound:
                found = reading.Summary("", "", "", None)
            summaries.put(key, found)
        return found

    async def gather_limited(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(call: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                return await call()

        return list(await asyncio.gather(*(one(c) for c in calls)))

    async def folders_with_counts(box: AccountMailbox) -> list[tuple[str, int, int]]:
        record = await box.record()
        names = [INBOX, *sorted(n for n in record.folders if n != INBOX)]
        indexes = await asyncio.gather(*(box.sync(n) for n in names))
        return [
            (n, len(i.entries), sum(1 for e in i.entries.values() if SEEN not in e.flags))
            for n, i in zip(names, indexes, strict=True)
        ]

    def extend(app: FastAPI) -> None:
        add_error_pages(
            app,
            "webmail",
            HERE / "static",
            lambda request, status, text: page(request, "error.html", None, status, message=text),
        )

        @app.exception_handler(StoreUnavailable)
        async def _store(request: Request, err: StoreUnavailable) -> Response:
            log.warning("webmail.store_unavailable", extra={"reason": str(err)})
            return page(request, "error.html", None, 503, message="The mail store is unavailable.")

        # --- login -------------------------------------------------------------------------

        @app.get("/", response_model=None)
        async def index(request: Request) -> Response:
            return see_other(folder_url(INBOX))

        @app.get("/login", response_model=None)
        async def login_page(request: Request) -> Response:
            token = new_token()
            response = page(request, "login.html", None, login_csrf=token)
            set_cookie(request, response, LOGIN_COOKIE, token, LOGIN_COOKIE_AGE)
            return response

        @app.post("/login", response_model=None)
        async def login(request: Request) -> Response:
            fields = parse_form(await request.body())
            if not tokens_match(fields.get("csrf"), request.cookies.get(LOGIN_COOKIE) or "\0"):
                raise Denied(403, "the form's security token is missing or wrong; reload the page")
            name, password = fields.get("login", ""), fields.get("password", "")
            client = client_of(request)
            attempt = await ports.throttle.attempt(ports.authenticator, client, name, password)
            if attempt.account is None:
                LOGINS.labels(attempt.refusal or "failed").inc()
                blocked = attempt.refusal == "blocked"
                return page(
                    request,
                    "login.html",
                    None,
                    429 if blocked else 401,
                    login_csrf=request.cookies.get(LOGIN_COOKIE, ""),
                    error="Too many failed logins. Try again later." if blocked else FAILED_LOGIN,
                )
            account = attempt.account
            token, _ = await ports.sessions.create(str(account), account.domain)
            await ports.mailbox(account.domain, account.name).record()  # INBOX, Sent, Trash...
            LOGINS.labels("ok").inc()
            log.info("webmail.login", extra={"remote": client})
            done = see_other(folder_url(INBOX))
            set_cookie(request, done, SESSION_COOKIE, token, int(SESSION_LIFETIME))
            done.delete_cookie(LOGIN_COOKIE, path="/")
            return done

        @app.post("/logout", response_model=None)
        async def logout(request: Request) -> Response:
            me = await who(request)
            await form(request, me.session)
            await ports.sessions.delete(request.cookies.get(SESSION_COOKIE))
            response = see_other("/login")
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

        # --- reading -----------------------------------------------------------------------

        @app.get("/mail", response_model=None)
        async def folder_page(
            request: Request,
            f: str = INBOX,
            page_no: int = 1,
            sort: str = "date",
            order: str = "desc",
            q: str = "",
            within: str = "subject",
        ) -> Response:
            me = await who(request)
            box = box_of(me)
            folder = folder_of(f)
            sort = sort if sort in SORTS else "date"
            within = within if within in SEARCH_IN else "subject"
            folders = await folders_with_counts(box)
            if folder not in {n for n, _, _ in folders}:
                raise Denied(404, "no such folder")
            index = await index_of(box, folder)
            entries = list(index.entries.values())
            query = q.strip().lower()[:200]
            if query and within == "body":
                raws = await gather_limited(
                    [partial(_read_or_empty, box, folder, e) for e in entries]
                )
                entries = [
                    e
                    for e, raw in zip(entries, raws, strict=True)
                    if query in raw.decode("utf-8", "replace").lower()
                ]
            need_all = bool(query) or sort != "date"
            if need_all:
                found = await gather_limited([partial(summary_of, box, folder, e) for e in entries])
                pairs: list[tuple[Entry, reading.Summary | None]] = list(
                    zip(entries, found, strict=True)
                )
                if query and within != "body":
                    key = "from" if within == "from" else "subject"
                    pairs = [(e, s) for e, s in pairs if query in _field(s, key)]
            else:
                pairs = [(e, None) for e in entries]
            reverse = order != "asc"
            if sort == "date":
                pairs.sort(key=lambda p: (p[0].when, p[0].uid), reverse=reverse)
            elif sort == "from":
                pairs.sort(
                    key=lambda p: (p[1].sender.lower() if p[1] else "", p[0].uid), reverse=reverse
                )
            else:
                pairs.sort(
                    key=lambda p: (p[1].subject.lower() if p[1] else "", p[0].uid), reverse=reverse
                )
            pages = max(1, (len(pairs) + PAGE_SIZE - 1) // PAGE_SIZE)
            page_no = min(max(1, page_no), pages)
            shown = pairs[(page_no - 1) * PAGE_SIZE : page_no * PAGE_SIZE]
            rows = [
                Row(
                    e.uid,
                    SEEN in e.flags,
                    FLAGGED in e.flags,
                    ANSWERED in e.flags,
                    e.size,
                    s if s is not None else await summary_of(box, folder, e),
                    e.when,
                )
                for e, s in shown
            ]
            return page(
                request,
                "folder.html",
                me,
                folder=folder,
                folders=folders,
                rows=rows,
                page_no=page_no,
                pages=pages,
                total=len(pairs),
                sort=sort,
                order=order if order == "asc" else "desc",
                q=q[:200],
                within=within,
                url=folder_url,
            )

        @app.get("/read", response_model=None)
        async def read_page(request: Request, f: str, uid: int, images: int = 0) -> Response:
            me = await who(request)
            box = box_of(me)
            folder = folder_of(f)
            entry = await entry_of(box, folder, uid)
            raw = await raw_of(box, folder, entry)
            base = "/part?" + urlencode({"f": folder, "uid": uid})
            shown = reading.view(raw, base + "&n={n}", images=bool(images))
            if SEEN not in entry.flags:
                await box.set_flags(folder, [uid], frozenset({SEEN}), "add")  # read on open
            folders = await folders_with_counts(box)
            response = page(
                request,
                "message.html",
                me,
                folder=folder,
                folders=folders,
                uid=uid,
                msg=shown,
                flagged=FLAGGED in entry.flags,
                arrived=arrival(entry.when),
                images=bool(images),
                part_base=base,
                url=folder_url,
            )
            if images:
                response.headers["Content-Security-Policy"] = IMAGES_CSP
            return response

        @app.get("/part", response_model=None)
        async def part(request: Request, f: str, uid: int, n: int) -> Response:
            me = await who(request)
            box = box_of(me)
            folder = folder_of(f)
            entry = await entry_of(box, folder, uid)
            found = reading.part_bytes(await raw_of(box, folder, entry), n)
            if found is None:
                raise Denied(404, "no such part")
            name, data = found
            return Response(
                data,
                media_type="application/octet-stream",
                headers={
                    "Content-Disposition": reading.content_disposition(name),
                    "Content-Security-Policy": "default-src 'none'; sandbox",
                },
            )

        @app.post("/act", response_model=None)
        async def act(request: Request) -> Response:
            me = await who(request)
            fields = await form(request, me.session)
            box = box_of(me)
            folder = folder_of(fields.get("f"))
            try:
                uid = int(fields.get("uid", ""))
            except ValueError as err:
                raise Denied(404, "no such message") from err
            await entry_of(box, folder, uid)
            action = fields.get("action", "")
            back = fields.get("back", "")
            match action:
                case "flag" | "unflag":
                    mode: FlagMode = "add" if action == "flag" else "remove"
                    index = await box.set_flags(folder, [uid], frozenset({FLAGGED}), mode)
                    found = index.by_uid().get(uid)
                    if request.headers.get("HX-Request") == "true" and found is not None:
                        return await row(request, me, box, folder, found[1])  # htmx: one row
                case "unread":
                    await box.set_flags(folder, [uid], frozenset({SEEN}), "remove")
                    back = "list"
                case "delete":
                    if folder == TRASH:
                        await box.expunge(folder, [uid])
                    else:
                        await move(box, folder, uid, TRASH)
                    back = "list"
                case "move":
                    dest = folder_of(fields.get("to"))
                    if not (await box.record()).exists(dest) or dest == folder:
                        raise Denied(404, "no such folder")
                    await move(box, folder, uid, dest)
                    back = "list"
                case _:
                    raise Denied(400, "no such action")
            log.info("webmail.changed", extra={"action": action})
            if back == "list":
                return see_other(folder_url(folder))
            return see_other("/read?" + urlencode({"f": folder, "uid": uid}))

        async def row(
            request: Request, me: Who, box: AccountMailbox, folder: str, e: Entry
        ) -> HTMLResponse:
            shown = Row(
                e.uid,
                SEEN in e.flags,
                FLAGGED in e.flags,
                ANSWERED in e.flags,
                e.size,
                await summary_of(box, folder, e),
                e.when,
            )
            return page(request, "row.html", me, r=shown, folder=folder)

        async def move(box: AccountMailbox, folder: str, uid: int, dest: str) -> None:
            if not (await box.record()).exists(dest):
                with contextlib.suppress(FolderExists):
                    await box.create_folder(dest)
            _, pairs = await box.copy(folder, [uid], dest)
            if pairs:
                await box.expunge(folder, [uid])

        # --- writing -----------------------------------------------------------------------

        async def original(
            box: AccountMailbox, f: str | None, uid: str | None
        ) -> tuple[str, int, bytes] | None:
            if not f or not uid:
                return None
            folder = folder_of(f)
            try:
                number = int(uid)
            except ValueError as err:
                raise Denied(404, "no such message") from err
            entry = await entry_of(box, folder, number)
            return folder, number, await raw_of(box, folder, entry)

        @app.get("/compose", response_model=None)
        async def compose_page(
            request: Request, mode: str = "new", f: str = "", uid: str = ""
        ) -> Response:
            me = await who(request)
            box = box_of(me)
            draft = Draft()
            found = await original(box, f, uid) if mode != "new" else None
            if found is not None:
                draft = prefilled(mode, me.address, reading.view(found[2], ""))
            else:
                mode = "new"
            return page(
                request,
                "compose.html",
                me,
                draft=draft,
                mode=mode,
                f=found[0] if found else "",
                uid=found[1] if found else "",
                folders=await folders_with_counts(box),
                url=folder_url,
                limit=upload_limit(),
            )

        def upload_limit() -> int:
            databytes = ports.controls().databytes
            return min(databytes, UPLOAD_CAP) if databytes > 0 else UPLOAD_CAP

        @app.post("/send", response_model=None)
        async def send(request: Request) -> Response:
            me = await who(request)
            limit = upload_limit()
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                raise Denied(411, "the form must say its length")
            if int(length) > limit * 4 // 3 + 65536:  # base64 of the limit, and the fields
                SENT_TOTAL.labels("too_large").inc()
                raise Denied(413, "the message exceeds the size limit")
            async with request.form(max_files=MAX_FILES, max_fields=20) as data:
                text: dict[str, str] = {}
                files: list[Attachment] = []
                for key, value in data.multi_items():
                    if isinstance(value, UploadFile):
                        content = await value.read()
                        if value.filename or content:
                            files.append(
                                Attachment(
                                    reading.safe_filename(value.filename),
                                    value.content_type or "application/octet-stream",
                                    content,
                                )
                            )
                    elif key in text:
                        raise BadForm(f"the field {key[:40]!r} is given twice")
                    else:
                        text[key] = value
            check_csrf(text.get("csrf"), me.session)
            box = box_of(me)
            mode = text.get("mode", "new")
            found = await original(box, text.get("f"), text.get("uid"))
            draft = Draft(
                to=text.get("to", ""),
                cc=text.get("cc", ""),
                bcc=text.get("bcc", ""),
                subject=text.get("subject", ""),
                text=text.get("text", ""),
                attachments=files,
            )
            if found is not None and mode in ("reply", "replyall"):
                source = reading.view(found[2], "")
                draft.in_reply_to = source.message_id
                draft.references = source.references
            elif found is not None and mode == "forward":
                draft.forward = found[2]
            try:
                rcpts = recipients(draft)
                body = build(draft, me.address, ports.clock())
            except BadMessage as err:
                SENT_TOTAL.labels("refused").inc()
                return page(
                    request,
                    "compose.html",
                    me,
                    400,
                    draft=draft,
                    mode=mode,
                    f=found[0] if found else "",
                    uid=found[1] if found else "",
                    folders=await folders_with_counts(box),
                    url=folder_url,
                    limit=limit,
                    error=str(err),
                )
            if len(body) > limit:
                SENT_TOTAL.labels("too_large").inc()
                raise Denied(413, "the message exceeds the size limit")
            try:
                queued = await ports.sender.send(me.address, rcpts, body, client_of(request))
            except QueueFailure as err:
                SENT_TOTAL.labels("failed").inc()
                raise Temporary(f"The message was not sent: {err.text}") from err
            SENT_TOTAL.labels("ok").inc()
            log.info("webmail.sent", extra={"msg_id": queued.id, "rcpt_count": len(rcpts)})
            await save_sent(box, body)
            if found is not None and mode in ("reply", "replyall"):
                await box.set_flags(found[0], [found[1]], frozenset({ANSWERED}), "add")
            return see_other(folder_url(SENT))

        async def save_sent(box: AccountMailbox, body: bytes) -> None:
            try:
                if not (await box.record()).exists(SENT):
                    await box.create_folder(SENT)
                await box.append(SENT, body, frozenset({SEEN}))
            except (FolderExists, FolderMissing, Temporary, StoreUnavailable) as err:
                # sent is sent: a missing copy is logged, never a second message
                log.warning("webmail.sent_copy_failed", extra={"reason": repr(err)})

        # --- the account -------------------------------------------------------------------

        @app.get("/password", response_model=None)
        async def password_page(request: Request) -> Response:
            me = await who(request)
            return page(request, "password.html", me)

        @app.post("/password", response_model=None)
        async def password_change(request: Request) -> Response:
            me = await who(request)
            fields = await form(request, me.session)
            new = fields.get("new", "")
            if new != fields.get("repeat", ""):
                return page(request, "password.html", me, 400, error="The new passwords differ.")
            attempt = await ports.throttle.attempt(
                ports.authenticator, client_of(request), me.address, fields.get("current", "")
            )
            if attempt.account != me.account:
                status = 429 if attempt.refusal == "blocked" else 403
                return page(
                    request, "password.html", me, status, error="The current password is wrong."
                )
            try:
                await admin.set_password(
                    ports.directory(), Target(me.account.domain, me.account.name), new
                )
            except DirectoryError as err:
                return page(request, "password.html", me, 400, error=str(err))
            log.info("webmail.password_changed")
            return page(request, "password.html", me, done=True)

    return extend


def _field(summary: reading.Summary | None, name: str) -> str:
    if summary is None:
        return ""
    return (summary.sender if name == "from" else summary.subject).lower()


async def _read_or_empty(box: AccountMailbox, folder: str, entry: Entry) -> bytes:
    try:
        return await box.read(folder, entry)
    except BlobNotFound:
        return b""


def _re(prefix: str, subject: str) -> str:
    return subject if subject.lower().startswith(prefix.lower()) else f"{prefix} {subject}"


def prefilled(mode: str, me: str, source: reading.View) -> Draft:
    """The compose form for a reply, reply-all or forward of ``source``."""
    if mode == "forward":
        return Draft(subject=_re("Fwd:", source.subject))
    quoted = "\n".join(f"> {line}" for line in source.text.splitlines())
    draft = Draft(
        to=source.reply_to or source.sender,
        subject=_re("Re:", source.subject),
        text=f"\n\n{source.sender} wrote:\n{quoted}\n",
    )
    if mode == "replyall":
        others = [
            a
            for _, a in getaddresses([source.to, source.cc])
            if a and a.lower() != me.lower() and a.lower() not in draft.to.lower()
        ]
        draft.cc = ", ".join(others)
    return draft
