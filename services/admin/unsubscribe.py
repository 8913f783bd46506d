"""RFC 8058 one-click unsubscribe for the mailing lists (issue #15), served beside admin's pages.

``List-Unsubscribe: <https://ADMIN/unsubscribe/TOKEN>`` with ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click``: a POST whose body is ``List-Unsubscribe=One-Click`` (as
``application/x-www-form-urlencoded`` or ``multipart/form-data``, RFC 8058 section 3.1)
unsubscribes the token's address from the token's list, with no login and no CSRF token: the
token itself (:mod:`qmesh.lists.oneclick`, an HMAC with an expiry bound to list and address) is
the authority. A GET only shows a page with a button that makes that POST; it never
unsubscribes, since link scanners and previews follow GETs.

The address leaves both the list and its digest, as ezmlm-manage's unsubscribe does; the
lists service's state (KV ``qmesh_lists``) is written with its own compare-and-set.
"""

from __future__ import annotations

import email.policy
import logging
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.templating import Jinja2Templates
from nats.js.kv import KeyValue
from prometheus_client import Counter

from qmesh.bus.connection import NotConnected
from qmesh.contract.envelope import printable
from qmesh.contract.errors import Temporary
from qmesh.lists import oneclick, state
from qmesh.web.forms import BadForm, parse_form

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
FIELD = "List-Unsubscribe"
VALUE = "One-Click"
MAX_BODY = 8 * 1024
NOT_ASKED = "The request did not ask to unsubscribe (List-Unsubscribe=One-Click)."

UNSUBSCRIBES = Counter(
    "qmesh_admin_list_unsubscribes_total", "One-click list unsubscribes", ["result"]
)


def one_click_field(content_type: str, body: bytes) -> str | None:
    """The value of the ``List-Unsubscribe`` field of a POST body, or None."""
    if len(body) > MAX_BODY:
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        head = f"Content-Type: {printable(content_type)[:500]}\n\n".encode()
        parsed = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not isinstance(parsed, EmailMessage) or not parsed.is_multipart():
            return None
        for part in parsed.iter_parts():
            if part.get_param("name", header="content-disposition") == FIELD:
                payload = part.get_payload(decode=True)
                return (
                    payload.decode("ascii", "replace").strip() if isinstance(payload, bytes) else ""
                )
        return None
    try:
        return parse_form(body).get(FIELD)
    except BadForm:
        return None


def one_click(
    lists_kv: Callable[[], KeyValue], clock: Callable[[], float] = time.time
) -> Callable[[FastAPI], None]:
    templates = Jinja2Templates(directory=HERE / "templates")

    def page(request: Request, status: int, **context: object) -> Response:
        return templates.TemplateResponse(
            request, "unsubscribe.html", {"who": None, **context}, status_code=status
        )

    async def checked(token: str) -> oneclick.Checked:
        key = await state.existing_cookie_key(lists_kv())
        if key is None:  # no list has ever written a token
            return oneclick.check(b"", "", clock())
        return oneclick.check(key, token, clock())

    def unavailable(request: Request) -> Response:
        return page(request, 503, problem="The list service's state cannot be reached. Try again.")

    def extend(app: FastAPI) -> None:
        @app.get("/unsubscribe/{token}", response_model=None)
        async def confirm(request: Request, token: str) -> Response:
            try:
                found = await checked(token)
            except (Temporary, NotConnected):
                return unavailable(request)
            if found.problem is not None:
                return page(request, 400, problem=found.problem)
            return page(request, 200, list_address=found.list_address, address=found.address)

        @app.post("/unsubscribe/{token}", response_model=None)
        async def unsubscribe(request: Request, token: str) -> Response:
            asked = one_click_field(request.headers.get("content-type", ""), await request.body())
            if asked != VALUE:
                UNSUBSCRIBES.labels("not_asked").inc()
                return page(request, 400, problem=NOT_ASKED)
            try:
                found = await checked(token)
                if found.list_address is None or found.address is None:
                    UNSUBSCRIBES.labels("refused").inc()
                    return page(request, 400, problem=found.problem)
                kv = lists_kv()
                left = False
                for which in ("sub", "digest"):
                    left |= await state.subscribe(
                        kv, found.list_address, found.address, which, add=False
                    )
            except (Temporary, NotConnected, state.ListConflict):
                return unavailable(request)
            UNSUBSCRIBES.labels("done" if left else "not_subscribed").inc()
            log.info("admin.list_unsubscribed", extra={"list": found.list_address, "done": left})
            return page(
                request, 200, list_address=found.list_address, address=found.address, done=True
            )

    return extend
