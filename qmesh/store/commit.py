"""Group commit of the directory store's writes, on the event loop (throughput #10).

A put of a body in hand is staged on the loop: its bytes go into the page cache. What is left
waits for the disk: the staged file's ``fsync``, the link or rename that makes it the object, and
the ``fsync`` of the object's directory; a delete leaves only that last one. A worker thread for
those few calls cost more than the calls: every system call in it handed the interpreter lock
to and from the busy loop, each hand-over a wake-up and a context switch (``perf``: a quarter
of the services' CPU was the scheduler's).

So they run on the loop, at the end of its turn, for every write that reached that point in the
same turn: each staged file fsynced and made visible, then each directory fsynced once for all
the names made or removed in it. A write is acknowledged only after its directory's fsync, so
what a caller is told is on disk is on disk, as before (LOCAL-24, ARCH-10). The loop waits for
the disk meanwhile, a fraction of a millisecond on a local disk, during which the other
services have the CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

# What is left of one write: fsync its file and make it visible (or remove it); the directory
# whose fsync makes that durable, and what the write returns.
Step = Callable[[], tuple[Path, T]]


class _Waiting(Generic[T]):
    __slots__ = ("done", "step")

    def __init__(self, step: Step[T], done: asyncio.Future[T]) -> None:
        self.step, self.done = step, done


class GroupCommit:
    """Writes waiting for the disk, committed together at the end of the loop's turn."""

    def __init__(self, sync_directory: Callable[[Path], None]) -> None:
        self._sync_directory = sync_directory
        self._waiting: list[_Waiting[object]] = []

    async def commit(self, step: Step[T]) -> T:
        """Run ``step`` with the other writes of this turn, then fsync its directory; its value.

        Raises what the step or the directory's fsync raised. A caller cancelled meanwhile does
        not stop the commit: the write is made as if it had waited.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append(_Waiting(step, done))  # type: ignore[arg-type]
        return await done

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        directories: dict[Path, list[tuple[asyncio.Future[object], object]]] = {}
        for waiting in batch:
            try:
                directory, value = waiting.step()
            except Exception as err:
                _fail(waiting.done, err)
                continue
            directories.setdefault(directory, []).append((waiting.done, value))
        for directory, made in directories.items():
            try:
                self._sync_directory(directory)
            except Exception as err:
                for done, _ in made:
                    _fail(done, err)
                continue
            for done, value in made:
                if not done.done():
                    done.set_result(value)


def _fail(done: asyncio.Future[object], err: Exception) -> None:
    if not done.done():
        done.set_exception(err)
