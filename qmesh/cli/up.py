"""``qmesh up``: the whole cluster on one machine, like daemontools' svscan for qmail.

It starts nats-server (JetStream, data under ``$QMESH_DATA``) with one NATS user per service
and one for the commands, each with the chart's permissions and a random password kept in
``$QMESH_DATA/secrets`` (owner-only, hardening #2); makes the control directory with safe
defaults if it is missing; provisions streams, consumers and buckets and the canonical local
domain as the admin user; and runs each service in its own process with its own credential.
NATS and every service are supervised: one that dies is restarted with back-off, NATS on the
same port with the same data (hardening #9). Ctrl-C or SIGTERM stops the services (each
drains) and then NATS.

NATS runs with ``sync_interval: always``, so a 250 means the JetStream writes behind it are on
disk (throughput #10); each time it starts, ``qmesh up`` reads the setting back from the
server's monitoring endpoint (loopback, a free port) and warns if it is not in force.

``QMESH_NATS_URL`` names a NATS server of your own. ``qmesh up`` always runs its own, so it
refuses to start while that variable is set rather than leave the commands talking to another
server than the services (hardening #15).
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

from qmesh.cli.bootstrap import (
    ensure_buckets,
    ensure_canonical_domain,
    ensure_control_dir,
    provision_bus,
)
from qmesh.cli.connect import URL_FILE
from qmesh.cli.natsd import NatsServer, durability_problem, read_varz, start_nats_server
from qmesh.cli.natsusers import ADMIN, password_file, user_name, write_server_config
from qmesh.cli.run import SERVICES
from qmesh.dns.servers import parse_servers

log = logging.getLogger(__name__)

HEALTH_PORTS = {
    "smtpd": 8081,
    "send": 8082,
    "local": 8083,
    "remote": 8084,
    "pop3d": 8085,
    "imapd": 8086,  # (#13)
    "lists": 8087,  # issue #15
}
# admin's pages and health share one port, QMESH_ADMIN_PORT (issue 14)
PAGE_PORTS = {"admin": "QMESH_ADMIN_PORT", "webmail": "QMESH_WEBMAIL_PORT"}
# a service whose NATS user is not named after it: "admin" is the commands' user
NATS_ROLES = {"admin": "webadmin"}
LISTENER_PORTS = {  # environment variable -> default
    "QMESH_SMTP_PORT": 2525,
    "QMESH_SUBMISSION_PORT": 2587,
    "QMESH_QMTP_PORT": 2209,
    "QMESH_POP3_PORT": 2110,
    "QMESH_SMTPS_PORT": 2465,
    "QMESH_POP3S_PORT": 2995,
    "QMESH_IMAP_PORT": 2143,  # imapd (#13)
    "QMESH_IMAPS_PORT": 2993,
    "QMESH_ADMIN_PORT": 8088,
    "QMESH_WEBMAIL_PORT": 8089,  # webmail's pages (issue 14)
}
NATS_PORT = 4222
RESTART_DELAY_MAX = 10.0
RUNS_WELL = 60.0  # seconds; a child that ran this long starts its back-off afresh
NATS_CREDENTIAL_VARS = ("QMESH_NATS_USER", "QMESH_NATS_PASSWORD_FILE", "QMESH_NATS_CREDS")


class Refused(Exception):
    """``qmesh up`` will not start: the message says why and what to do."""


def restart_delay(restarts: int) -> float:
    """0.5 s, 1 s, 2 s ... up to ``RESTART_DELAY_MAX``."""
    return min(RESTART_DELAY_MAX, 0.25 * 2.0 ** min(restarts, 6))


@dataclass
class Backoff:
    """The pause before a supervised process starts again: growing while it keeps dying, afresh
    once it ran ``RUNS_WELL`` seconds (daemontools' supervise, with a back-off)."""

    restarts: int = 0
    started: float = 0.0

    def begin(self) -> None:
        self.started = time.monotonic()

    def after_exit(self) -> float:
        if time.monotonic() - self.started > RUNS_WELL:
            self.restarts = 0
        self.restarts += 1
        return restart_delay(self.restarts)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def configured_ports(environ: Mapping[str, str]) -> set[int]:
    """The ports ``qmesh up``'s services are set to listen on, from ``environ`` or defaults."""
    ports = {int(environ.get(name, default)) for name, default in LISTENER_PORTS.items()}
    ports |= {
        int(environ.get(f"QMESH_{name.upper()}_HTTP_PORT", default))
        for name, default in HEALTH_PORTS.items()
    }
    return ports


def monitor_port(taken: set[int]) -> int:
    """A free loopback port for NATS's monitoring endpoint, none of the ports in ``taken``.

    NATS starts before the services; a port the kernel hands out at random could be one a
    service binds a moment later, which would then find it taken."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in taken:
            return port


@dataclass
class Child:
    name: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    backoff: Backoff = field(default_factory=Backoff)
    log_path: Path = field(default_factory=Path)


def as_role(env: Mapping[str, str], data: Path, role: str) -> dict[str, str]:
    """``env`` with the NATS credential of ``role`` (a service, or ``admin``)."""
    return {
        **env,
        "QMESH_NATS_USER": user_name(role),
        "QMESH_NATS_PASSWORD_FILE": str(password_file(data, role)),
    }


def cluster_env(
    environ: Mapping[str, str], nats_url: str, data: Path, control: Path
) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k not in NATS_CREDENTIAL_VARS}
    env["QMESH_NATS_URL"] = nats_url
    env["QMESH_CONTROL"] = str(control)
    env["QMESH_DATA"] = str(data)
    env.setdefault("QMESH_STORE", f"file://{(data / 'store').resolve()}")
    env.setdefault("QMESH_LISTEN_HOST", "127.0.0.1")
    env.setdefault("QMESH_HTTP_HOST", "127.0.0.1")
    for var, default in LISTENER_PORTS.items():
        env.setdefault(var, str(default))
    # RFC 8058 one-click unsubscribe links in list messages point at admin's pages (issue #15)
    http_host = env["QMESH_HTTP_HOST"]
    if http_host in ("0.0.0.0", "::", ""):
        http_host = "127.0.0.1"
    if ":" in http_host:
        http_host = f"[{http_host}]"
    env.setdefault("QMESH_LISTS_UNSUBSCRIBE_URL", f"http://{http_host}:{env['QMESH_ADMIN_PORT']}")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # every service asks the same resolvers (issue 11); a bad value stops here, named
    dns_servers = parse_servers(environ.get("QMESH_DNS_SERVERS", ""))
    env["QMESH_DNS_SERVERS"] = ",".join(s.text() for s in dns_servers)
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
    child.backoff.begin()


async def _supervise(child: Child, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        await _spawn(child)
        assert child.process is not None
        code = await child.process.wait()
        if stopping.is_set():
            return
        delay = child.backoff.after_exit()
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
    url = environ.get("QMESH_NATS_URL", "").strip()
    if url:  # hardening #15: one setting, one meaning
        raise Refused(
            f"QMESH_NATS_URL is set ({url}), but qmesh up runs its own NATS server "
            "(port QMESH_NATS_PORT, default 4222), which the qmesh commands find through "
            "$QMESH_DATA; unset QMESH_NATS_URL, or run each service with `qmesh run` against "
            "that server"
        )
    try:
        parse_servers(environ.get("QMESH_DNS_SERVERS", ""))
    except ValueError as err:
        raise Refused(str(err)) from err
    data = Path(environ.get("QMESH_DATA", "./qmesh-data")).resolve()
    control = Path(environ.get("QMESH_CONTROL", "./control")).resolve()
    (data / "log").mkdir(parents=True, exist_ok=True)
    listen_host = environ.get("QMESH_LISTEN_HOST", "127.0.0.1")  # as cluster_env defaults it
    return Site(data, control, ensure_control_dir(control, listen_host=listen_host))


class EmbeddedNats:
    """qmesh up's nats-server, restarted on the same port with the same data when it dies."""

    def __init__(self, data: Path, port: int, reserved: set[int]) -> None:
        self.directory = data / "nats"
        self._config = write_server_config(data, self.directory / "qmesh-up.conf")
        self._reserved = reserved  # ports the monitoring endpoint must leave to the services
        self.server = start_nats_server(
            self.directory, port=port, config=self._config, monitor=monitor_port(reserved)
        )
        self.url = self.server.url
        self.port = int(self.url.rsplit(":", 1)[1])  # restarts keep the URL every child has
        self.backoff = Backoff()
        self.backoff.begin()

    async def supervise(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            code = self.server.process.poll()
            if code is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 0.2)
                continue
            delay = self.backoff.after_exit()
            _say(
                f"qmesh: nats-server exited with status {code}; restarting on port "
                f"{self.port} in {delay:.1f} s (log: {self.server.log})"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            if stopping.is_set():
                return
            self.backoff.begin()
            try:
                self.server = await asyncio.to_thread(
                    start_nats_server,
                    self.directory,
                    port=self.port,
                    config=self._config,
                    monitor=monitor_port(self._reserved),
                )
            except (RuntimeError, TimeoutError, OSError) as err:
                _say(f"qmesh: nats-server did not start again: {err}")
                continue
            _say(f"qmesh: nats-server running again at {self.url}")
            _say(await asyncio.to_thread(durability_line, self.server))

    def stop(self) -> None:
        self.server.stop()


def durability_line(server: NatsServer) -> str:
    """What ``qmesh up`` says about the JetStream writes of ``server``, read from its /varz."""
    if server.monitor is None:
        return "qmesh: WARNING: cannot tell whether NATS fsyncs JetStream writes (no monitoring)"
    try:
        problem = durability_problem(read_varz(server.monitor))
    except (OSError, ValueError) as err:
        return f"qmesh: WARNING: cannot tell whether NATS fsyncs JetStream writes: {err}"
    if problem is not None:
        return f"qmesh: WARNING: {problem}"
    return (
        "qmesh: NATS writes every JetStream message to disk before acknowledging it "
        f"(sync_interval: always; monitoring {server.monitor})"
    )


def start_nats(environ: Mapping[str, str], site: Site) -> EmbeddedNats:
    nats_port = int(environ.get("QMESH_NATS_PORT", NATS_PORT))
    if not _port_free("127.0.0.1", nats_port):
        _say(f"qmesh: port {nats_port} is taken; NATS takes a free port instead")
        nats_port = -1
    nats = EmbeddedNats(site.data, nats_port, configured_ports(environ))
    (site.data / URL_FILE).write_text(nats.url + "\n")
    return nats


async def up(environ: Mapping[str, str], site: Site, nats: EmbeddedNats) -> int:
    data, control = site.data, site.control
    if site.created_controls:
        _say(f"qmesh: created control files with safe defaults in {control}")
    env = cluster_env(environ, nats.url, data, control)
    admin = as_role(env, data, ADMIN)
    await ensure_buckets(env)
    await provision_bus(admin)
    domain = await ensure_canonical_domain(admin)

    children = []
    for name in SERVICES:
        child_env = as_role(env, data, NATS_ROLES.get(name, name))
        if name in PAGE_PORTS:
            child_env["QMESH_HTTP_PORT"] = env[PAGE_PORTS[name]]
        else:
            child_env["QMESH_HTTP_PORT"] = environ.get(
                f"QMESH_{name.upper()}_HTTP_PORT", str(HEALTH_PORTS[name])
            )
        children.append(Child(name, child_env, log_path=data / "log" / f"{name}.log"))

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    tasks = [asyncio.create_task(_supervise(c, stopping)) for c in children]
    tasks.append(asyncio.create_task(nats.supervise(stopping)))
    host = env["QMESH_LISTEN_HOST"]
    _say(f"qmesh: NATS {nats.url} (JetStream data in {nats.directory})")
    _say(await asyncio.to_thread(durability_line, nats.server))
    _say(f"qmesh: NATS users and passwords in {password_file(data, ADMIN).parent} (owner only)")
    _say(f"qmesh: store {env['QMESH_STORE']}")
    _say(f"qmesh: control {control} (canonical domain {domain})")
    _say(
        f"qmesh: SMTP {host}:{env['QMESH_SMTP_PORT']}, submission {host}:"
        f"{env['QMESH_SUBMISSION_PORT']} and {host}:{env['QMESH_SMTPS_PORT']} (TLS), "
        f"QMTP {host}:{env['QMESH_QMTP_PORT']}, POP3 {host}:{env['QMESH_POP3_PORT']} and "
        f"{host}:{env['QMESH_POP3S_PORT']} (TLS)"
    )
    _say(f"qmesh: IMAP {host}:{env['QMESH_IMAP_PORT']} and {host}:{env['QMESH_IMAPS_PORT']} (TLS)")
    _say(
        "qmesh: health "
        + ", ".join(
            f"{c.name} http://{env['QMESH_HTTP_HOST']}:{c.env['QMESH_HTTP_PORT']}/readyz"
            for c in children
        )
    )
    _say(
        f"qmesh: admin pages http://{env['QMESH_HTTP_HOST']}:{env['QMESH_ADMIN_PORT']}/ "
        f"(log in as postmaster@{domain}; give it a password first: "
        "qmesh user passwd postmaster --password-stdin)"
    )
    _say(
        f"qmesh: webmail http://{env['QMESH_HTTP_HOST']}:{env['QMESH_WEBMAIL_PORT']}/ "
        "(log in with an account's address and password)"
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
    try:
        site = prepare(os.environ)
    except Refused as err:
        sys.stderr.write(f"qmesh up: {err}\n")
        return 2
    nats = start_nats(os.environ, site)
    try:
        return asyncio.run(up(os.environ, site, nats))
    finally:
        nats.stop()
