"""The HTTP side of every service: ``/healthz``, ``/readyz``, ``/metrics`` (ARCHITECTURE 7).

``/healthz`` is liveness: the loop answers, nothing else is checked, so an outage of NATS or S3
causes no restart storm. ``/readyz`` runs the registered checks and answers 503 naming every
one that fails; it is false while starting and from the first moment of a shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT = 2.0


class Readiness:
    """What ``/readyz`` reports: the lifecycle phase plus the service's checks."""

    def __init__(self, checks: Mapping[str, Check]) -> None:
        self.checks = dict(checks)
        self.phase = "starting"  # starting -> running -> draining

    async def failing(self) -> dict[str, str]:
        failing: dict[str, str] = {}
        if self.phase != "running":
            failing["lifecycle"] = self.phase
        names = list(self.checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.checks[n](), CHECK_TIMEOUT) for n in names),
            return_exceptions=True,
        )
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                failing[name] = str(result) or type(result).__name__
        return failing


def health_app(
    service: str, readiness: Readiness, extend: Callable[[FastAPI], None] | None = None
) -> FastAPI:
    """The health routes; ``extend`` adds a service's own routes to the same app (admin)."""
    app = FastAPI(title=f"qmesh {service}", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        failing = await readiness.failing()
        if failing:
            return JSONResponse({"ready": False, "failing": failing}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    if extend is not None:
        extend(app)
    return app
