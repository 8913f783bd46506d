"""Picking up control changes without a restart (CTL-07).

:class:`ControlWatcher` is a service component: it polls the directory's fingerprint (names,
mtimes, sizes, the ConfigMap ``..data`` target) every ``interval`` seconds, and on a change, a
SIGHUP (:meth:`ControlWatcher.request_reload`) or an admin request
(:meth:`ControlWatcher.reload_now`) reads the whole directory again as one snapshot. The new
:class:`Controls` replace the old ones in one assignment; a reload that fails keeps the old
ones, logs ``control.reload_failed`` naming the file, and is retried on the next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from qmesh.control.loader import inspect_controls, load_controls
from qmesh.control.snapshot import Fingerprint, fingerprint
from qmesh.control.values import Controls

log = logging.getLogger(__name__)

OnChange = Callable[[Controls], Awaitable[None] | None]
DEFAULT_INTERVAL = 5.0  # well inside the 60 s of CTL-07


class ControlWatcher:
    """Holds the current :class:`Controls` and replaces them when the files change.

    The constructor loads the directory and raises :class:`ControlError` if it cannot, so a
    service that builds its watcher first refuses to start on a bad control (CTL-06).
    ``on_change`` is called (and awaited, if it returns an awaitable) after each reload whose
    values differ from the previous ones.
    """

    def __init__(
        self,
        control_dir: Path,
        environ: Mapping[str, str],
        on_change: OnChange,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._dir = control_dir
        self._environ = dict(environ)
        self._on_change = on_change
        self._interval = interval
        self._current = load_controls(control_dir, self._environ)
        self._seen = self._fingerprint()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> Controls:
        return self._current

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="control-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def request_reload(self) -> None:
        """Reload soon, whatever the fingerprint says: for a SIGHUP handler (synchronous)."""
        self._wake.set()

    async def reload_now(self) -> bool:
        """Read the directory again now; ``True`` if it loaded (changed or not)."""
        async with self._lock:
            seen = await asyncio.to_thread(self._fingerprint)
            return await self._reload(seen)

    def _fingerprint(self) -> Fingerprint:
        extra = [p for p in (self._current.tlscert, self._current.tlskey) if p is not None]
        return fingerprint(self._dir, extra)

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            forced = self._wake.is_set()
            self._wake.clear()
            async with self._lock:
                seen = await asyncio.to_thread(self._fingerprint)
                if forced or seen != self._seen:
                    await self._reload(seen)

    async def _reload(self, seen: Fingerprint) -> bool:
        self._seen = seen  # a bad version is reported once, not on every poll
        result = await asyncio.to_thread(inspect_controls, self._dir, self._environ)
        if result.errors:
            first = result.errors[0]
            log.warning(
                "control.reload_failed",
                extra={
                    "control": first.control,
                    "error": str(first),
                    "errors": [str(err) for err in result.errors],
                },
            )
            return False
        old, new = self._current, result.controls
        changed = new.changed(old)
        if not changed:
            log.debug("control.unchanged")
            return True
        self._current = new
        log.info("control.reloaded", extra={"changed": list(changed)})
        if new.canonical_local_domain() != old.canonical_local_domain():
            log.warning(
                "control.canonical_domain_changed",
                extra={"old": old.canonical_local_domain(), "new": new.canonical_local_domain()},
            )
        try:
            outcome = self._on_change(new)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("control.apply_failed", extra={"changed": list(changed)})
        return True
