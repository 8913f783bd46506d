"""A service component whose work is one long-running task (a loop, a watch, a timer)."""

from __future__ import annotations

import asyncio
import contextlib


class Background:
    """Started with the service, cancelled at stop; subclasses write :meth:`_run`."""

    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError
