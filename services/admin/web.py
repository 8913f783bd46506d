"""admin's pages: the directory and the queue, through the functions the CLI uses (issue 14).

Every change goes through :mod:`qmesh.directory.admin` (as ``qmesh domain|user|rule`` does),
every look at the queue through :mod:`qmesh.cli.queueadmin` and its formatting, the DNS page
through ``qmesh dns``'s text: nothing is written twice. Each request is checked against the
logged-in administrator (:mod:`qmesh.directory.roles`): a domain's postmaster reaches only that
domain, and a domain it may not see answers exactly as one that does not exist. Every form
carries the session's CSRF token; the login form a token of its own cookie.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import Counter

from qmesh.cli.admin import parse_quota
from qmesh.cli.dnsrecords import zone_text
from qmesh.cli.queue import QueueRecord, format_flushed, format_list, format_show, format_stat
from qmesh.cli.queueadmin import (
    count_records,
    read_one,
    read_records,
    request_flush,
    todo_pending,
)
from qmesh.contract.errors import Temporary
from qmesh.contract.ids import parse_queue_id
from qmesh.control import Controls
from qmesh.directory import admin
from qmesh.directory.authenticate import DirectoryAuthenticator
from qmesh.directory.errors import DirectoryError, InvalidName, RecordMissing
from qmesh.directory.names import check_account_name, domain_name, rule_file_name
from qmesh.directory.namespaces import Namespaces, Target
from qmesh.directory.records import MAX_VACATION_DAYS, AccountRecord, DomainRecord, Vacation
from qmesh.directory.roles import Role
from qmesh.directory.store import Directory
from qmesh.dkim.keyring import KeyringError, load_keyring
from qmesh.dns.records import expected
from qmesh.limits.logins import Throttle
from qmesh.lists.admin import ListStores
from qmesh.web.forms import parse_form
from qmesh.web.pages import Denied, add_error_pages, see_other
from qmesh.web.security import set_cookie
from qmesh.web.sessions import (
    SESSION_LIFETIME,
    SessionRecord,
    Sessions,
    new_token,
    tokens_match,
)
from services.admin.listpages import Kit, add_list_pages
from services.admin.login import Administrators

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "qmesh_admin"
LOGIN_COOKIE = "qmesh_admin_login"
LOGIN_COOKIE_AGE = 3600
FAILED_LOGIN = "Login failed: wrong name or password, or not an administrator."

LOGINS = Counter("qmesh_admin_logins_total", "Administrator logins", ["result"])
CHANGES = Counter("qmesh_admin_changes_total", "Directory changes made in the pages", ["what"])


@dataclass
class Ports:
    """What the pages work with; each callable raises ``Temporary`` while NATS is away."""

    directory: Callable[[], Directory]
    js: Callable[[], JetStreamContext]
    nc: Callable[[], NATS]
    sessions: Sessions
    authenticator: DirectoryAuthenticator
    throttle: Throttle  # failed logins, counted with every listener's (defences #12)
    namespaces: Callable[[], Namespaces]
    controls: Callable[[], Controls]
    control_dir: Path
    list_stores: Callable[[], ListStores]
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Who:
    role: Role
    session: SessionRecord


def routes(ports: Ports) -> Callable[[FastAPI], None]:
    templates = Jinja2Templates(directory=HERE / "templates")

    def page(
        request: Request, name: str, who: Who | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            name,
            {"who": who.role if who else None, "csrf": who.session.csrf if who else "", **context},
            status_code=status,
        )

    async def who(request: Request) -> Who:
        record = await ports.sessions.get(request.cookies.get(SESSION_COOKIE))
        if record is None:
            raise Denied(401, "not logged in")
        # the administrator's account is read again on every request: one disabled, deleted
        # or left without a password loses its sessions at once
        name, _, domain = record.login.partition("@")
        account = await ports.directory().get_account(domain, name)
        if account is None or not account.enabled or not account.verifier:
            raise Denied(401, "not logged in")
        return Who(Role(record.login, record.domain), record)

    async def form(
        request: Request, session: SessionRecord, multiline: tuple[str, ...] = ()
    ) -> dict[str, str]:
        fields = parse_form(await request.body(), multiline)
        if not tokens_match(fields.get("csrf"), session.csrf):
            raise Denied(403, "the form's security token is missing or wrong; reload the page")
        return fields

    def domain_of(who: Who, text: str) -> str:
        """The stored name of a domain this administrator may see, else "no such domain"."""
        try:
            domain = ports.namespaces().namespace(domain_name(text))
        except DirectoryError:
            domain = ""
        if not domain or not who.role.may(domain):
            raise RecordMissing(f"no such domain: {text[:80]}")
        return domain

    def account_of(domain: str, text: str) -> Target:
        return Target(domain, check_account_name(text.lower()))

    def system(who: Who) -> None:
        if not who.role.system:
            raise Denied(403, "only the system administrator may do this")

    def extend(app: FastAPI) -> None:
        add_error_pages(
            app,
            "admin",
            HERE / "static",
            lambda request, status, text: page(request, "error.html", None, status, message=text),
        )

        @app.exception_handler(DirectoryError)
        async def _refused(request: Request, err: DirectoryError) -> Response:
            status = 404 if isinstance(err, RecordMissing) else 400
            return page(request, "error.html", None, status, message=str(err))

        # --- login -------------------------------------------------------------------------

        @app.get("/", response_model=None)
        async def index(request: Request) -> Response:
            return see_other("/domains")

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
            client = request.client.host if request.client else "unknown"
            administrators = Administrators(ports.authenticator, ports.namespaces)
            attempt = await ports.throttle.attempt(administrators, client, name, password)
            if attempt.refusal == "blocked":
                LOGINS.labels("throttled").inc()
                wait = max(1, ports.controls().authblock)
                response = page(
                    request,
                    "login.html",
                    None,
                    429,
                    login_csrf=request.cookies.get(LOGIN_COOKIE, ""),
                    error=f"Too many failed logins. Try again in {wait} seconds.",
                )
                response.headers["Retry-After"] = str(wait)
                return response
            role = attempt.account
            if role is None:  # the throttle has waited its delay, growing with the failures
                LOGINS.labels("failed").inc()
                return page(
                    request,
                    "login.html",
                    None,
                    401,
                    login_csrf=request.cookies.get(LOGIN_COOKIE, ""),
                    error=FAILED_LOGIN,
                )
            token, _ = await ports.sessions.create(role.login, role.domain)
            LOGINS.labels("ok").inc()
            log.info("admin.login", extra={"login": role.login, "remote": client})
            done = see_other("/domains")
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

        # --- domains -----------------------------------------------------------------------

        @app.get("/domains", response_model=None)
        async def domains(request: Request) -> Response:
            me = await who(request)
            directory = ports.directory()
            found: list[DomainRecord]
            if me.role.domain is None:
                found = await directory.list_domains()
            else:
                one = await directory.get_domain(me.role.domain)
                found = [one] if one is not None else []
            return page(request, "domains.html", me, domains=found)

        @app.post("/domains", response_model=None)
        async def domain_add(request: Request) -> Response:
            me = await who(request)
            fields = await form(request, me.session)
            system(me)
            record = await admin.add_domain(
                ports.directory(),
                fields.get("domain", ""),
                fields.get("postmaster") or None,
                namespaces=ports.namespaces(),
            )
            CHANGES.labels("domain_add").inc()
            log.info("admin.domain_added", extra={"domain": record.name, "login": me.role.login})
            return see_other(f"/domains/{record.name}")

        @app.get("/domains/{name}", response_model=None)
        async def domain_page(request: Request, name: str) -> Response:
            me = await who(request)
            domain = domain_of(me, name)
            directory = ports.directory()
            record = await directory.get_domain(domain)
            if record is None:
                raise RecordMissing(f"no such domain: {domain}")
            accounts = await directory.list_accounts(domain)
            return page(
                request,
                "domain.html",
                me,
                domain=record,
                accounts=accounts,
                rules=_rules(record.rules),
            )

        @app.post("/domains/{name}/accounts", response_model=None)
        async def account_add(request: Request, name: str) -> Response:
            me = await who(request)
            fields = await form(request, me.session)
            domain = domain_of(me, name)
            target = account_of(domain, fields.get("account", ""))
            record = await admin.add_user(ports.directory(), target, fields.get("password") or None)
            CHANGES.labels("account_add").inc()
            log.info("admin.account_added", extra={"account": str(target), "login": me.role.login})
            return see_other(f"/domains/{domain}/accounts/{record.name}")

        @app.get("/domains/{name}/accounts/{account}", response_model=None)
        async def account_page(request: Request, name: str, account: str) -> Response:
            me = await who(request)
            target = account_of(domain_of(me, name), account)
            record: AccountRecord | None = await ports.directory().get_account(
                target.domain, account
            )
            if record is None:
                raise RecordMissing(f"no such account: {target}")
            return page(request, "account.html", me, account=record, rules=_rules(record.rules))

        @app.post("/domains/{name}/accounts/{account}/{action}", response_model=None)
        async def account_action(
            request: Request, name: str, account: str, action: str
        ) -> Response:
            me = await who(request)
            fields = await form(request, me.session, ("text",) if action == "vacation" else ())
            target = account_of(domain_of(me, name), account)
            directory = ports.directory()
            back = f"/domains/{target.domain}/accounts/{target.account}"
            if action == "vacation":
                await admin.set_vacation(directory, target, _vacation(fields))
            elif action == "password":
                await admin.set_password(directory, target, fields.get("password") or None)
            elif action == "quota":
                await admin.set_quota(directory, target, parse_quota(fields.get("quota", "")))
            elif action in ("enable", "disable"):
                await admin.set_enabled(directory, target, action == "enable")
            elif action == "delete":
                await admin.delete_user(directory, target)
                back = f"/domains/{target.domain}"
            else:
                raise RecordMissing(f"no such action: {action[:40]}")
            CHANGES.labels(f"account_{action}").inc()
            log.info(
                f"admin.account_{action}", extra={"account": str(target), "login": me.role.login}
            )
            return see_other(back)

        @app.post("/domains/{name}/rules", response_model=None)
        async def rule_set(request: Request, name: str) -> Response:
            me = await who(request)
            fields = await form(request, me.session, multiline=("text",))
            domain = domain_of(me, name)
            target, back = _target(domain, fields.get("account", ""))
            text = fields.get("text", "")
            if text and not text.endswith("\n"):
                text += "\n"
            directory = ports.directory()
            if fields.get("delete"):
                await admin.delete_rule(directory, target, fields.get("name", ""))
            else:
                await admin.set_rule(directory, target, fields.get("name", ""), text)
            CHANGES.labels("rule_del" if fields.get("delete") else "rule_set").inc()
            return see_other(back)

        def _target(domain: str, account: str) -> tuple[Target, str]:
            if not account:
                return Target(domain, None), f"/domains/{domain}"
            target = account_of(domain, account)
            return target, f"/domains/{domain}/accounts/{target.account}"

        @app.get("/domains/{name}/dns", response_model=None)
        async def dns_page(request: Request, name: str) -> Response:
            me = await who(request)
            domain = domain_of(me, name)
            try:
                keys = load_keyring(ports.control_dir).get(domain)
            except KeyringError as err:
                raise DirectoryError(str(err)) from err
            me_host = ports.controls().me or domain
            text = zone_text(domain, me_host, expected(domain, me_host, keys))
            return page(request, "dns.html", me, domain=domain, text=text)

        add_list_pages(
            app,
            Kit(page=page, who=who, form=form, domain_of=domain_of, stores=ports.list_stores),
        )

        # after the more specific /domains/{name}/... routes above
        @app.post("/domains/{name}/{action}", response_model=None)
        async def domain_action(request: Request, name: str, action: str) -> Response:
            me = await who(request)
            await form(request, me.session)
            domain = domain_of(me, name)
            system(me)
            directory = ports.directory()
            if action in ("enable", "disable"):
                await admin.set_domain_enabled(directory, domain, action == "enable")
            elif action == "delete":
                await admin.delete_domain(directory, domain)
            else:
                raise RecordMissing(f"no such action: {action[:40]}")
            CHANGES.labels(f"domain_{action}").inc()
            log.info(f"admin.domain_{action}", extra={"domain": domain, "login": me.role.login})
            return see_other("/domains")

        # --- the queue (system administrator) ----------------------------------------------

        @app.get("/queue", response_model=None)
        async def queue_page(request: Request) -> Response:
            me = await who(request)
            system(me)
            js = ports.js()
            items = await _queue_call(read_records(js))
            stat = format_stat(
                await _queue_call(count_records(js)), await _queue_call(todo_pending(js))
            )
            ids = sorted(i.id for i in items if isinstance(i, QueueRecord))
            text = format_list(items, ports.clock())
            return page(request, "queue.html", me, stat=stat, text=text, ids=ids)

        @app.get("/queue/{qid}", response_model=None)
        async def queue_show(request: Request, qid: str) -> Response:
            me = await who(request)
            system(me)
            try:
                qid = parse_queue_id(qid)
            except ValueError as err:
                raise RecordMissing("not a queue id") from err
            found = await _queue_call(read_one(ports.js(), qid))
            if found is None or not isinstance(found, QueueRecord):
                raise RecordMissing(f"no message {qid} in the queue")
            return page(
                request, "queue_show.html", me, qid=qid, text=format_show(found, ports.clock())
            )

        @app.post("/queue/flush", response_model=None)
        async def queue_flush(request: Request) -> Response:
            me = await who(request)
            await form(request, me.session)
            system(me)
            answer = await _queue_call(request_flush(ports.nc(), 10.0))
            log.info("admin.queue_flush", extra={"login": me.role.login})
            return page(request, "queue_flushed.html", me, text=format_flushed(answer))

    return extend


async def _queue_call(call: Awaitable[Any]) -> Any:
    """A queue read; NATS trouble becomes ``Temporary`` (the CLI's exit 111)."""
    try:
        return await call
    except Temporary:
        raise
    except Exception as err:
        raise Temporary(f"Cannot read the queue ({type(err).__name__}).") from err


def _vacation(fields: dict[str, str]) -> Vacation | None:
    """The vacation form: off, or a subject, a text and the days between replies."""
    if fields.get("off"):
        return None
    days = fields.get("days", "").strip() or str(MAX_VACATION_DAYS)
    if not days.isdigit() or len(days) > 3:
        raise InvalidName(f"invalid vacation days: {days[:20]!r}: a number from 1 to 7")
    return admin.vacation_reply(fields.get("subject", ""), fields.get("text", ""), int(days))


def _rules(rules: dict[str, str]) -> list[tuple[str, str]]:
    return sorted((rule_file_name(name), text) for name, text in rules.items())
