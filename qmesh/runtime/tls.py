"""The TLS server context from ``tlscert`` and ``tlskey`` (SMTPD-80, POP3-41, POP3-43).

Only the services that serve TLS (smtpd, pop3d) read the files these controls name: the
control loader only records the names, so a service without the files mounted still starts.
The pair is loaded when the service builds its :class:`TlsContexts`, and one that cannot be
loaded then stops startup (CTL-06). It is rebuilt when the control paths change or a file's
modification time or size does (a renewed certificate under the same name), checked once per
connection. A pair that cannot be loaded later keeps the previous context and is logged.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from qmesh.control.parse import ControlError
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


def _readable(name: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        message = f"names {str(path)!r}, which is not a readable file ({reason})"
        raise ControlError(name, message) from None


class TlsContexts:
    def __init__(self, controls: Callable[[], Controls]) -> None:
        """Loads the pair the controls name now; :class:`ControlError` if it cannot."""
        self._controls = controls
        self._seen: tuple[Stamp, Stamp] | None = None
        self._context: ssl.SSLContext | None = None
        c = controls()
        if c.tlscert is None or c.tlskey is None:
            return
        _readable("tlscert", c.tlscert)
        _readable("tlskey", c.tlskey)
        try:
            self._seen = (_stamp(c.tlscert), _stamp(c.tlskey))
            self._context = server_context(c.tlscert, c.tlskey)
        except (OSError, ssl.SSLError) as err:
            raise ControlError(
                "tlscert", f"{c.tlscert} with key {c.tlskey} does not load: {err}"
            ) from None
        log.info("tls.loaded", extra={"cert": str(c.tlscert)})

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
