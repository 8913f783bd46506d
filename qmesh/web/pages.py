"""What every page service answers the same way: a refused request, a bad form, a moment
without NATS (issue 14).

A service renders its own error page; :func:`add_error_pages` decides which status and text
each of these errors gets, and sends a browser that is not logged in to ``/login``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from qmesh.contract.errors import Temporary
from qmesh.web.forms import BadForm
from qmesh.web.security import add_headers

log = logging.getLogger(__name__)

ErrorPage = Callable[[Request, int, str], Response]


class Denied(Exception):
    """Not logged in, a bad CSRF token, or something this user may not see: refused."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def add_error_pages(app: FastAPI, service: str, static: Path, error: ErrorPage) -> None:
    """The security headers, ``/static``, and the answers to :class:`Denied`, :class:`BadForm`
    and :class:`Temporary`, each rendered by ``error(request, status, text)``."""
    add_headers(app)
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.exception_handler(Denied)
    async def _denied(request: Request, err: Denied) -> Response:
        if err.status == 401 and request.method == "GET":
            return see_other("/login")
        return error(request, err.status, err.text)

    @app.exception_handler(BadForm)
    async def _bad_form(request: Request, err: BadForm) -> Response:
        return error(request, 400, str(err))

    @app.exception_handler(Temporary)
    async def _temporary(request: Request, err: Temporary) -> Response:
        log.warning(f"{service}.unavailable", extra={"reason": err.text})
        return error(request, 503, f"{err.text} Try again.")
