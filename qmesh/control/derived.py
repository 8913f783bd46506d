"""A service's view of the controls, recomputed only when the watcher loads new ones.

Services keep derived configuration (relay policy, routing rules, bounce settings) as a
:class:`Derived` over the :class:`~qmesh.control.watch.ControlWatcher`: calling it is a pointer
comparison on the hot path, and a reload that yields an unusable value keeps the old one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from qmesh.control.values import Controls
from qmesh.control.watch import ControlWatcher

log = logging.getLogger(__name__)

T = TypeVar("T")


class Derived(Generic[T]):
    def __init__(self, watcher: ControlWatcher, derive: Callable[[Controls], T]) -> None:
        self._watcher = watcher
        self._derive = derive
        self._source = watcher.current
        self._value = derive(self._source)  # at startup an unusable value stops the service

    def __call__(self) -> T:
        current = self._watcher.current
        if current is not self._source:
            self._source = current
            try:
                self._value = self._derive(current)
            except Exception as err:
                log.warning("control.derive_failed", extra={"reason": str(err)})
        return self._value


def ignore_change(_: Controls) -> None:
    """An ``on_change`` for watchers whose users read through :class:`Derived`."""
