"""Program delivery in a limited subprocess (LOCAL-18, LOCAL-19).

``sh -c <command>`` runs in a fresh scratch directory (its working directory and ``HOME``,
removed afterwards) with only the LOCAL-19 environment, no inherited descriptors besides
stdin/stdout/stderr, its own session (so a time-out kills the whole group) and resource
limits set in the child before ``exec``: CPU seconds, address space, file size, open files,
no core dumps, and a process count where the kernel lets an unprivileged process set it.
Standard input is the message; standard output and error together form the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.local.report import ProgramResult, exit_class

log = logging.getLogger(__name__)

OUTPUT_KEEP = 4096  # more than a report can hold (LOCAL-40); the rest is read and dropped
CHUNK = 65536
EXIT_POLL = 0.02
PIPE_GRACE = 5.0  # for output still buffered when the program has gone


@dataclass(frozen=True, slots=True)
class Limits:
    """What one program may use. ``wall_seconds`` is LOCAL-18's time limit (at most 1 hour)."""

    wall_seconds: float = 3600.0
    cpu_seconds: int = 600
    memory_bytes: int = 512 * 1024 * 1024
    file_bytes: int = 256 * 1024 * 1024
    open_files: int = 64
    processes: int = 64


@dataclass(frozen=True, slots=True)
class Outcome:
    result: ProgramResult
    status: int | None  # exit status; None when killed by a signal or the time limit
    output: str
    timed_out: bool = False


def _limiter(limits: Limits) -> Callable[[], None]:
    """The ``preexec_fn``: runs in the child between fork and exec."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))

    return apply


async def _feed(stdin: asyncio.StreamWriter, message: bytes) -> None:
    """Write the message; a program that does not read it all is not an error."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(message)
        await stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
        stdin.close()
        await stdin.wait_closed()


async def _collect(stdout: asyncio.StreamReader) -> bytes:
    kept = bytearray()
    while chunk := await stdout.read(CHUNK):
        if len(kept) < OUTPUT_KEEP:
            kept += chunk[: OUTPUT_KEEP - len(kept)]
    return bytes(kept)


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Wait for the program itself to exit.

    ``Process.wait()`` also waits for its pipes to close, which a background child holding
    stdout would delay until it too exits; the exit status is there as soon as the program
    ends, so poll it.
    """
    while proc.returncode is None:  # noqa: ASYNC110 (no exit event without pipes closed)
        await asyncio.sleep(EXIT_POLL)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_program(
    command: str,
    message: bytes,
    env: Mapping[str, str],
    *,
    limits: Limits,
    scratch_root: Path | None = None,
) -> Outcome:
    """Run one program line; the scratch directory is gone when this returns."""
    scratch = Path(tempfile.mkdtemp(prefix="qmesh-prog-", dir=scratch_root))
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=scratch,
            env={**env, "HOME": str(scratch)},
            close_fds=True,
            start_new_session=True,
            preexec_fn=_limiter(limits),
        )
        assert proc.stdin is not None and proc.stdout is not None
        feeding = asyncio.create_task(_feed(proc.stdin, message))
        reading = asyncio.create_task(_collect(proc.stdout))
        timed_out = False
        try:
            await asyncio.wait_for(_exited(proc), limits.wall_seconds)
        except TimeoutError:
            timed_out = True
        except BaseException:  # the delivery was cancelled (shutdown): nothing outlives it
            _kill_group(proc.pid)
            feeding.cancel()
            reading.cancel()
            raise
        _kill_group(proc.pid)  # whatever is left in its session dies with the delivery
        feeding.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), PIPE_GRACE)
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        try:
            raw = await asyncio.wait_for(reading, PIPE_GRACE)
        except TimeoutError:
            raw = b""
        output = raw.decode("utf-8", "replace")
        code = proc.returncode
        if timed_out:
            return Outcome("temporary", None, output, timed_out=True)
        if code is None or code < 0:
            return Outcome("temporary", None, output)
        return Outcome(exit_class(code), code, output)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
