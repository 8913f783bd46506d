"""``qmesh up``: the whole cluster on one machine, like daemontools' svscan for qmail.

It starts nats-server (JetStream, data under ``$QMESH_DATA``), makes the control directory
with safe defaults if it is missing, creates the canonical local domain in the directory, and
runs each service in its own process, restarting any that dies. Ctrl-C or SIGTERM stops the
services (each drains) and then NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qmesh.cli.bootstrap import ensure_buckets, ensure_canonical_domain, ensure_control_dir
from qmesh.cli.natsd import NatsServer, start_nats_server
from qmesh.cli.run import SERVICES

log = logging.getLogger(__name__)

HEALTH_PORTS = {"smtpd": 8081, "send": 8082, "local": 8083, "remote": 8084, "pop3d": 8085}
LISTENER_PORTS = {  # environment variable -> default
    "QMESH_SMTP_PORT": 2525,
    "QMESH_SUBMISSION_PORT": 2587,
    "QMESH_QMTP_PORT": 2209,
    "QMESH_POP3_PORT": 2110,
    "QMESH_SMTPS_PORT": 2465,
    "QMESH_POP3S_PORT": 2995,
}
NATS_PORT = 4222
RESTART_DELAY_MAX = 10.0


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Child:
    name: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started: float = 0.0
    log_path: Path = field(default_factory=Path)


def cluster_env(
    environ: Mapping[str, str], nats_url: str, data: Path, control: Path
) -> dict[str, str]:
    env = dict(environ)
    env["QMESH_NATS_URL"] = nats_url
    env["QMESH_CONTROL"] = str(control)
    env["QMESH_DATA"] = str(data)
    env.setdefault("QMESH_STORE", f"file://{(data / 'store').resolve()}")
    env.setdefault("QMESH_LISTEN_HOST", "127.0.0.1")
    env.setdefault("QMESH_HTTP_HOST", "127.0.0.1")
    for var, default in LISTENER_PORTS.items():
        env.setdefault(var, str(default))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


async def _spawn(child: Child) -> None:
    out = child.log_path.open("ab")
    child.process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"services.{child.name}",
        env=child.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=out,
        stderr=out,
    )
    out.close()
    child.started = time.monotonic()


async def _supervise(child: Child, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        await _spawn(child)
        assert child.process is not None
        code = await child.process.wait()
        if stopping.is_set():
            return
        if time.monotonic() - child.started > 60:
            child.restarts = 0  # it ran a good while: start the back-off afresh
        child.restarts += 1
        delay = min(RESTART_DELAY_MAX, 0.25 * 2 ** min(child.restarts, 6))
        _say(
            f"qmesh: {child.name} exited with status {code}; restarting in {delay:.1f} s "
            f"(log: {child.log_path})"
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _stop_children(children: list[Child]) -> None:
    for child in children:
        if child.process and child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        if child.process and child.process.returncode is None:
            try:
                await asyncio.wait_for(child.process.wait(), 30)
            except TimeoutError:
                child.process.kill()
                await child.process.wait()


@dataclass(frozen=True)
class Site:
    """Where ``qmesh up`` keeps its state, decided before the loop starts."""

    data: Path
    control: Path
    created_controls: bool


def prepare(environ: Mapping[str, str]) -> Site:
    data = Path(environ.get("QMESH_DATA", "./qmesh-data")).resolve()
    control = Path(environ.get("QMESH_CONTROL", "./control")).resolve()
    (data / "log").mkdir(parents=True, exist_ok=True)
    listen_host = environ.get("QMESH_LISTEN_HOST", "127.0.0.1")  # as cluster_env defaults it
    return Site(data, control, ensure_control_dir(control, listen_host=listen_host))


def start_nats(environ: Mapping[str, str], site: Site) -> NatsServer:
    nats_port = int(environ.get("QMESH_NATS_PORT", NATS_PORT))
    if not _port_free("127.0.0.1", nats_port):
        _say(f"qmesh: port {nats_port} is taken; NATS takes a free port instead")
        nats_port = -1
    nats = start_nats_server(site.data / "nats", port=nats_port)
    (site.data / "nats.url").write_text(nats.url + "\n")
    return nats


async def up(environ: Mapping[str, str], site: Site, nats: NatsServer) -> int:
    data, control = site.data, site.control
    if site.created_controls:
        _say(f"qmesh: created control files with safe defaults in {control}")
    env = cluster_env(environ, nats.url, data, control)
    await ensure_buckets(env)
    domain = await ensure_canonical_domain(env)

    children = []
    for name in SERVICES:
        child_env = dict(env)
        child_env["QMESH_HTTP_PORT"] = environ.get(
            f"QMESH_{name.upper()}_HTTP_PORT", str(HEALTH_PORTS[name])
        )
        children.append(Child(name, child_env, log_path=data / "log" / f"{name}.log"))

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    tasks = [asyncio.create_task(_supervise(c, stopping)) for c in children]
    host = env["QMESH_LISTEN_HOST"]
    _say(f"qmesh: NATS {nats.url} (JetStream data in {data / 'nats'})")
    _say(f"qmesh: store {env['QMESH_STORE']}")
    _say(f"qmesh: control {control} (canonical domain {domain})")
    _say(
        f"qmesh: SMTP {host}:{env['QMESH_SMTP_PORT']}, submission {host}:"
        f"{env['QMESH_SUBMISSION_PORT']} and {host}:{env['QMESH_SMTPS_PORT']} (TLS), "
        f"QMTP {host}:{env['QMESH_QMTP_PORT']}, POP3 {host}:{env['QMESH_POP3_PORT']} and "
        f"{host}:{env['QMESH_POP3S_PORT']} (TLS)"
    )
    _say(
        "qmesh: health "
        + ", ".join(
            f"{c.name} http://{env['QMESH_HTTP_HOST']}:{c.env['QMESH_HTTP_PORT']}/readyz"
            for c in children
        )
    )
    _say(f"qmesh: logs in {data / 'log'}; Ctrl-C stops everything")
    await stopping.wait()
    _say("qmesh: stopping")
    await _stop_children(children)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    _say("qmesh: stopped")
    return 0


def main_up() -> int:
    site = prepare(os.environ)
    nats = start_nats(os.environ, site)
    try:
        return asyncio.run(up(os.environ, site, nats))
    finally:
        nats.stop()
