"""nats-server's CPU per durable write: single publishes against atomic batches.

    .venv/bin/python bench/nats_batch.py [--messages 3000] [--size 300] [--batches 1 2 10 50]
        [--fsyncs]

A nats-server started as ``qmesh up`` starts it (``sync_interval: always``), one work-queue
stream with ``allow_atomic``; ``--messages`` publishes of ``--size`` bytes, 64 in flight, first
one by one (batch 1), then in atomic batches (``Nats-Batch-Id``, ``Nats-Batch-Sequence``,
``Nats-Batch-Commit`` on the last, whose reply is the batch's ack). Prints the server's CPU per
message and the rate; ``--fsyncs`` also counts its ``fsync`` calls with ``strace``. This is the
measurement behind "What is left" in ``docs/performance.md`` (throughput #10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats
from nats.js.api import RetentionPolicy, StreamConfig

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cputime import TICKS_PER_SECOND, parse_stat
from qmesh.cli.natsd import start_nats_server

IN_FLIGHT = 64
STREAM = "BENCH"


def server_seconds(pid: int) -> float:
    return parse_stat(Path(f"/proc/{pid}/stat").read_text()).own / TICKS_PER_SECOND


async def publish(url: str, messages: int, size: int, batch: int) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        config = StreamConfig(
            name=STREAM,
            subjects=["bench.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            allow_atomic=True,
        )
        await js.add_stream(config)
        payload = b"x" * size
        slots = asyncio.Semaphore(max(1, IN_FLIGHT // batch))

        async def one_batch(n: int) -> None:
            async with slots:
                if batch == 1:
                    await js.publish(f"bench.{n}", payload)
                    return
                batch_id = uuid.uuid4().hex
                for k in range(1, batch + 1):
                    headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(k)}
                    if k < batch:
                        await nc.publish(f"bench.{n}.{k}", payload, headers=headers)
                        continue
                    headers["Nats-Batch-Commit"] = "1"
                    reply = await nc.request(f"bench.{n}.{k}", payload, 10, headers=headers)
                    answer = json.loads(reply.data)
                    if "error" in answer:
                        raise SystemExit(f"batch refused: {answer['error']}")

        await asyncio.gather(*(one_batch(n) for n in range(messages // batch)))
        stored = (await js.stream_info(STREAM)).state.messages
        if stored != messages // batch * batch:
            raise SystemExit(f"{stored} messages stored of {messages}")
    finally:
        await nc.close()


def measure(messages: int, size: int, batch: int, fsyncs: bool) -> str:
    with tempfile.TemporaryDirectory(prefix="nats-batch-") as work:
        server = start_nats_server(Path(work) / "nats")
        trace = None
        try:
            if fsyncs:
                trace = subprocess.Popen(
                    ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o",
                     f"{work}/strace", "-p", str(server.process.pid)],
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1.0)
            cpu, start = server_seconds(server.process.pid), time.perf_counter()
            asyncio.run(publish(server.url, messages, size, batch))
            wall = time.perf_counter() - start
            cpu = server_seconds(server.process.pid) - cpu
        finally:
            if trace is not None:
                trace.terminate()
                trace.wait()
            server.stop()
        line = (
            f"batch {batch:>3}: nats-server {cpu / messages * 1000:.3f} ms CPU per message,"
            f" {messages / wall:,.0f} msgs/s"
        )
        if trace is not None:
            calls = sum(
                int(row.split()[3])
                for row in Path(f"{work}/strace").read_text().splitlines()
                if row.rstrip().endswith(("fsync", "fdatasync"))
            )
            line += f", {calls / messages:.2f} fsyncs per message (under strace)"
        return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 10, 50])
    parser.add_argument("--fsyncs", action="store_true", help="count fsyncs with strace")
    args = parser.parse_args()
    if args.fsyncs and shutil.which("strace") is None:
        parser.error("--fsyncs needs strace (apt-get install strace)")
    for batch in args.batches:
        sys.stdout.write(measure(args.messages, args.size, batch, args.fsyncs) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
