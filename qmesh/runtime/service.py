"""Running one service: components plus the health app in one asyncio loop.

This plays the part of Postfix's ``single_server_main``. :func:`serve` starts the HTTP side
first (so liveness answers and readiness says "starting" while dependencies come up), then the
components in order; on SIGTERM or SIGINT readiness turns false first, then the components stop
in reverse order (each finishing or returning its in-flight work), then HTTP stops. The whole
shutdown stays inside :data:`STOP_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import uvicorn
import uvloop
from fastapi import FastAPI

from qmesh.runtime.health import Check, Readiness, health_app
from qmesh.runtime.logging import setup_logging
from qmesh.runtime.settings import Settings

GC_THRESHOLD = 20_000  # allocations between young collections (Python's default: 700)
log = logging.getLogger(__name__)

STOP_TIMEOUT = 25.0


class Component(Protocol):
    """A long-running part of a service (a listener, a consumer, a connection)."""

    async def start(self) -> None:
        """Begin work; return once started (connections may keep retrying in the background)."""
        ...

    async def stop(self) -> None:
        """Stop taking new work, finish or hand back what is in flight, release resources."""
        ...


@dataclass
class Service:
    name: str
    components: Sequence[Component]
    checks: Mapping[str, Check] = field(default_factory=dict)
    # a service whose pages are its HTTP side (admin) adds its routes to the health app
    http: Callable[[FastAPI], None] | None = None


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Running:
    """A started service, for tests and ``qmesh up``: its HTTP port and a way to stop it."""

    service: Service
    readiness: Readiness
    http_port: int
    _http: _Server
    _http_task: asyncio.Task[None]
    _started: list[Component]

    async def stop(self) -> None:
        self.readiness.phase = "draining"
        log.info("service.stopping", extra={"service_name": self.service.name})
        for component in reversed(self._started):
            try:
                await asyncio.wait_for(component.stop(), STOP_TIMEOUT)
            except Exception:
                log.exception("service.stop_failed", extra={"component": type(component).__name__})
        self._http.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._http_task, 5)
        log.info("service.stopped", extra={"service_name": self.service.name})


async def start(service: Service, settings: Settings) -> Running:
    readiness = Readiness(service.checks)
    config = uvicorn.Config(
        health_app(service.name, readiness, service.http),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    http = _Server(config)
    http_task = asyncio.create_task(http.serve())
    while not http.started:
        if http_task.done():
            await http_task
            raise RuntimeError(f"HTTP server on port {settings.http_port} did not start")
        await asyncio.sleep(0.01)
    port = http.servers[0].sockets[0].getsockname()[1]
    running = Running(service, readiness, port, http, http_task, [])
    try:
        for component in service.components:
            await component.start()
            running._started.append(component)
    except BaseException:
        await running.stop()
        raise
    readiness.phase = "running"
    # What start-up made (modules, controls, clients) lives as long as the process: moved out
    # of the collector's sight, and collections made rarer, the per-message garbage costs less
    # to collect (throughput #10).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    log.info("service.started", extra={"service_name": service.name, "http_port": port})
    return running


async def serve(service: Service, settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then stop in order."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(start(service, settings))
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting not in done:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return
    running = starting.result()
    await stopping
    await running.stop()


def run(name: str, build: Callable[[Settings], Awaitable[Service]]) -> None:
    """Entry point of ``qmesh run <name>``: settings, logging, one loop. Every service serves
    HTTP on ``QMESH_HTTP_PORT`` (admin's pages too: ``qmesh up`` sets it from
    ``QMESH_ADMIN_PORT``)."""
    settings = Settings()
    setup_logging(name, settings.log_level)

    async def main() -> None:
        await serve(await build(settings), settings)

    # uvloop: the same asyncio API with the loop, sockets and timers in C (throughput #10)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
