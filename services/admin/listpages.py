"""admin's pages for a domain's mailing lists (issues 14 and 15).

Everything goes through :mod:`qmesh.lists.admin`, the functions behind ``qmesh list
create/show/del/subscribers/add/remove``: the page and the command cannot disagree. A domain's
postmaster reaches only its domain's lists (the domain check of every page, then the list's
own domain); another domain answers as one that does not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from prometheus_client import Counter

from qmesh.directory.errors import InvalidName, RecordMissing
from qmesh.lists import state
from qmesh.lists.admin import (
    ListOptions,
    ListStores,
    add_subscribers,
    create_list,
    delete_list,
    describe,
    domain_lists,
    existing,
    list_record,
    remove_subscribers,
)
from qmesh.lists.records import ListRecord

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_ADDRESSES = 100  # addresses in one "add" form, one a line
CHANGES = Counter("qmesh_admin_list_changes_total", "List changes made in the pages", ["what"])


class Page(Protocol):
    def __call__(
        self, request: Request, name: str, who: Any, status: int = 200, **context: Any
    ) -> HTMLResponse: ...


@dataclass(frozen=True)
class Kit:
    """What the list pages borrow from the other pages: rendering, the logged-in
    administrator, its checked forms and the domains it may see."""

    page: Page
    who: Callable[[Request], Awaitable[Any]]
    form: Callable[..., Awaitable[dict[str, str]]]
    domain_of: Callable[[Any, str], str]
    stores: Callable[[], ListStores]


def _flag(fields: dict[str, str], name: str) -> bool:
    return fields.get(name, "") not in ("", "0", "off")


def _number(fields: dict[str, str], name: str, default: float) -> float:
    text = fields.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise InvalidName(f"{name.replace('_', ' ')}: not a number: {text[:40]!r}") from None


def options_from(fields: dict[str, str]) -> ListOptions:
    """The create form's fields as ``qmesh list create``'s switches."""
    moderators = tuple(fields.get("moderators", "").split())
    digest_format = fields.get("digest_format") or "mime"
    if digest_format not in ("mime", "rfc1153"):
        raise InvalidName("digest format: mime or rfc1153")
    defaults = ListOptions()
    return ListOptions(
        moderated=_flag(fields, "moderated"),
        subscribers_only=_flag(fields, "subscribers_only"),
        digest=_flag(fields, "digest"),
        archive=_flag(fields, "archive"),
        verp=_flag(fields, "verp"),
        personal=_flag(fields, "personal"),
        prefix=fields.get("prefix", ""),
        owner=fields.get("owner", "").strip() or None,
        moderators=moderators,
        bounce_period=int(_number(fields, "bounce_period", defaults.bounce_period)),
        digest_every=int(_number(fields, "digest_every", defaults.digest_every)),
        digest_hours=_number(fields, "digest_hours", defaults.digest_hours),
        digest_format="rfc1153" if digest_format == "rfc1153" else "mime",
        moderation_hours=_number(fields, "moderation_hours", defaults.moderation_hours),
    )


def add_list_pages(app: FastAPI, kit: Kit) -> None:
    stores = kit.stores

    async def the_list(who: Any, domain_text: str, name: str) -> tuple[ListStores, ListRecord]:
        domain = kit.domain_of(who, domain_text)
        s = stores()
        return s, await existing(s.lists, f"{name}@{domain}")

    def see_other(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    @app.get("/domains/{name}/lists", response_model=None)
    async def lists_page(request: Request, name: str) -> Response:
        me = await kit.who(request)
        domain = kit.domain_of(me, name)
        found = await domain_lists(stores().lists, domain)
        return kit.page(
            request, "lists.html", me, domain=domain, lists=found, defaults=ListOptions()
        )

    @app.post("/domains/{name}/lists", response_model=None)
    async def list_create(request: Request, name: str) -> Response:
        me = await kit.who(request)
        fields = await kit.form(request, me.session, multiline=("moderators",))
        domain = kit.domain_of(me, name)
        list_name = fields.get("list", "").strip().lower()
        record = list_record(f"{list_name}@{domain}", options_from(fields))
        await create_list(stores(), record)
        CHANGES.labels("create").inc()
        log.info("admin.list_created", extra={"list": record.address, "login": me.role.login})
        return see_other(f"/domains/{domain}/lists/{record.name}")

    @app.get("/domains/{name}/lists/{list_name}", response_model=None)
    async def list_show(request: Request, name: str, list_name: str) -> Response:
        me = await kit.who(request)
        s, record = await the_list(me, name, list_name)
        subs = await state.subscribers(s.kv, record.address)
        which = "digest" if request.query_params.get("digest") else "sub"
        members = subs.digest if which == "digest" else subs.sub
        try:
            number = max(1, int(request.query_params.get("page", "1")[:9]))
        except ValueError:
            number = 1
        pages = max(1, -(-len(members) // PAGE_SIZE))
        number = min(number, pages)
        shown = members[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
        return kit.page(
            request,
            "list.html",
            me,
            record=record,
            lines=describe(record, subs),
            members=shown,
            total=len(members),
            which=which,
            number=number,
            pages=pages,
        )

    @app.post("/domains/{name}/lists/{list_name}/{action}", response_model=None)
    async def list_action(request: Request, name: str, list_name: str, action: str) -> Response:
        me = await kit.who(request)
        fields = await kit.form(request, me.session, multiline=("addresses",))
        s, record = await the_list(me, name, list_name)
        digest = _flag(fields, "digest")
        back = f"/domains/{record.domain}/lists/{record.name}" + ("?digest=1" if digest else "")
        if action in ("add", "remove"):
            addresses = fields.get("addresses", "").split()
            if not addresses:
                raise InvalidName("no address given")
            if len(addresses) > MAX_ADDRESSES:
                raise InvalidName(f"at most {MAX_ADDRESSES} addresses at once")
            change = add_subscribers if action == "add" else remove_subscribers
            count = await change(s.kv, record, addresses, digest)
            extra = {"list": record.address, "count": count, "login": me.role.login}
            log.info(f"admin.list_{action}", extra=extra)
        elif action == "delete":
            await delete_list(s, record)
            back = f"/domains/{record.domain}/lists"
            log.info("admin.list_deleted", extra={"list": record.address, "login": me.role.login})
        else:
            raise RecordMissing(f"no such action: {action[:40]}")
        CHANGES.labels(action).inc()
        return see_other(back)
