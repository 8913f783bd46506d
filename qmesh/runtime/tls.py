"""The TLS server context from ``tlscert`` and ``tlskey`` (SMTPD-80, POP3-41, POP3-43).

Rebuilt when the control paths change or a file's modification time or size does (a renewed
certificate under the same name), checked once per connection. A pair that cannot be loaded
keeps the previous context and is logged; with no previous one, TLS is unavailable.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from qmesh.control.values import Controls

log = logging.getLogger(__name__)

Stamp = tuple[str, int, int]


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _stamp(path: Path) -> Stamp:
    st = os.stat(path)
    return (str(path), st.st_mtime_ns, st.st_size)


class TlsContexts:
    def __init__(self, controls: Callable[[], Controls]) -> None:
        self._controls = controls
        self._seen: tuple[Stamp, Stamp] | None = None
        self._context: ssl.SSLContext | None = None

    def current(self) -> ssl.SSLContext | None:
        """The context for a new connection; ``None`` when TLS is not configured."""
        c = self._controls()
        if c.tlscert is None or c.tlskey is None:
            self._seen, self._context = None, None
            return None
        try:
            seen = (_stamp(c.tlscert), _stamp(c.tlskey))
            if seen != self._seen:
                self._seen = seen  # a bad pair is reported once, not per connection
                self._context = server_context(c.tlscert, c.tlskey)
                log.info("tls.loaded", extra={"cert": str(c.tlscert)})
        except (OSError, ssl.SSLError) as err:
            log.warning("tls.load_failed", extra={"reason": str(err)})
        return self._context
