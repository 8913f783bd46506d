"""End-to-end throughput through ``qmesh up``: many concurrent SMTP sessions send 2 KB
messages to local accounts; the clock stops when every message is in a mailbox.

    .venv/bin/python bench/e2e_throughput.py [--messages 1000] [--sessions 20] [--store files|s3]

Prints the figures and the conditions (cores, load, Python) they were taken under. It is a
benchmark, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.qmesh_site import DOMAIN, start_site

ACCOUNTS = 10
BODY = ("Subject: bench\r\n\r\n" + ("x" * 76 + "\r\n") * 26).encode()  # about 2 KB


async def send_all(port: int, messages: int, sessions: int) -> float:
    per_session = [messages // sessions + (i < messages % sessions) for i in range(sessions)]

    async def session(n: int, count: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
        await smtp.connect()
        for i in range(count):
            rcpt = f"user{(n + i) % ACCOUNTS}@{DOMAIN}"
            await smtp.sendmail("bench@far.test", [rcpt], BODY)
        await smtp.quit()

    start = time.perf_counter()
    await asyncio.gather(*(session(n, c) for n, c in enumerate(per_session)))
    return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--store", choices=("files", "s3"), default="files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qmesh-bench-") as tmp:
        site = start_site(Path(tmp), [f"user{i}" for i in range(ACCOUNTS)], args.store)
        try:
            sent_in = await send_all(site.cluster.smtp_port, args.messages, args.sessions)
            start = time.perf_counter() - sent_in
            deadline = time.monotonic() + 600
            count = 0
            while time.monotonic() < deadline:
                count = await asyncio.to_thread(site.delivered)
                if count >= args.messages:
                    break
                await asyncio.sleep(0.1)
            total = time.perf_counter() - start
        finally:
            site.stop()
    load = os.getloadavg()
    out = sys.stdout.write
    out(
        f"messages {args.messages} x {len(BODY)} bytes, {args.sessions} SMTP sessions, "
        f"store {args.store}\n"
    )
    out(
        f"accepted (250 after durable enqueue): {args.messages / sent_in:.1f} msg/s "
        f"({sent_in:.2f} s)\n"
    )
    out(f"delivered to mailboxes: {count} in {total:.2f} s = {count / total:.1f} msg/s\n")
    out(
        f"conditions: {os.cpu_count()} cores, load average before end {load[0]:.2f}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
