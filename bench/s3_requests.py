"""What one S3 request of the queue's kinds costs: the S3 store's caller and SeaweedFS.

    .venv/bin/python bench/s3_requests.py [--requests 2000] [--size 2300]

A SeaweedFS started for the run (as the tests start it), qmesh's ``S3Store`` on one bucket,
and ``--requests`` requests of each kind one after another, as a message makes them: the
create-only PUT of a body, its HEAD, its GET and its DELETE. For each kind it prints the CPU
of this process per request twice, through the store (a call into a worker thread and back on
uvloop's event loop, as the services make it) and with the same minio call made directly,
and the CPU of SeaweedFS per request. This is the measurement behind "After change 17" in
``docs/performance.md`` (throughput #10).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.nats_batch import server_seconds
from qmesh.store.base import BlobStore
from qmesh.store.s3 import S3Store, s3_client
from tests.servers import start_seaweedfs

BUCKET = "bench"
KINDS = ("PUT", "HEAD", "GET", "DELETE")


def own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def through_store(store: BlobStore, kind: str, body: bytes) -> Callable[[str], Awaitable[object]]:
    calls: dict[str, Callable[[str], Awaitable[object]]] = {
        "PUT": lambda key: store.put(key, body, create_only=True),
        "HEAD": store.stat,
        "GET": store.get,
        "DELETE": store.delete,
    }
    return calls[kind]


def direct(store: S3Store, kind: str, body: bytes) -> Callable[[str], object]:
    client = store._client
    calls: dict[str, Callable[[str], object]] = {
        "PUT": lambda key: store._put_bytes(key, body, {}, True),
        "HEAD": lambda key: client.stat_object(BUCKET, key),
        "GET": lambda key: store._read(key),
        "DELETE": lambda key: client.remove_object(BUCKET, key),
    }
    return calls[kind]


async def measure(store: S3Store, weed: int, requests: int, size: int) -> None:
    body = b"x" * size
    await store.ensure_bucket()
    for n in range(50):  # connections made, the bucket warm
        await store.put(f"warm/{n}", body, create_only=True)
    rows: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for prefix in ("store", "direct"):
        for kind in KINDS:
            mine, theirs = own_seconds(), server_seconds(weed)
            for n in range(requests):
                key = f"{prefix}/{n}"
                if prefix == "store":
                    await through_store(store, kind, body)(key)
                else:
                    direct(store, kind, body)(key)
            rows[kind].append((own_seconds() - mine) * 1e3 / requests)
            if prefix == "store":
                rows[kind].append((server_seconds(weed) - theirs) * 1e3 / requests)
    sys.stdout.write(
        f"{requests} requests of each kind, {size} bytes; CPU ms per request\n"
        f"{'':8}{'caller, through the store':>28}{'caller, minio directly':>25}{'SeaweedFS':>12}\n"
    )
    for kind, (stored, server, called) in rows.items():
        sys.stdout.write(f"{kind:8}{stored:28.3f}{called:25.3f}{server:12.3f}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--size", type=int, default=2300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="s3-requests-") as work:
        server = start_seaweedfs(Path(work))
        try:
            client = s3_client(server.endpoint, server.access_key, server.secret_key)
            store = S3Store(client, BUCKET)
            uvloop.run(measure(store, server.process.pid, args.requests, args.size))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
