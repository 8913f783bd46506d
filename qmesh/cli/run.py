"""``qmesh run SERVICE``: one service in this process (the container entrypoint)."""

from __future__ import annotations

import runpy

SERVICES = ("smtpd", "send", "local", "remote", "pop3d", "imapd", "lists", "admin", "webmail")


def run_service(name: str) -> None:
    """Run ``services.<name>`` as ``__main__`` (qmesh never imports a service statically)."""
    if name not in SERVICES:
        raise SystemExit(f"qmesh run: unknown service {name!r}; one of {', '.join(SERVICES)}")
    runpy.run_module(f"services.{name}", run_name="__main__", alter_sys=True)
