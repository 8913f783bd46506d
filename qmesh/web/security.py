"""What every admin and webmail response carries, and how its cookies are set (issue 14).

A strict Content-Security-Policy (scripts, styles and images only from this origin, no inline
script, no framing), ``X-Frame-Options: DENY`` for older browsers, no caching of pages, no
referrer. Cookies are ``HttpOnly`` and ``SameSite=Strict`` always, and ``Secure`` unless the
request came over plain HTTP from the loopback interface (``qmesh up`` on one machine, where a
browser would otherwise drop them); behind a TLS-terminating Ingress they are ``Secure``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookie_secure(scheme: str, client_host: str | None) -> bool:
    """``Secure`` unless plain HTTP from this machine's loopback."""
    return not (scheme == "http" and is_loopback(client_host))


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=cookie_secure(request.url.scheme, request.client.host if request.client else None),
        httponly=True,
        samesite="strict",
    )


def add_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def _headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
