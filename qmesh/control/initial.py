"""A first control directory for ``qmesh up``: enough to receive and deliver, never a relay.

``rcpthosts`` is always written, and ``relayclients`` only explains itself, so a newcomer's
cluster accepts mail for its own name and relays for nobody (SMTPD-42). The limits a public
server needs (``databytes``, ``timeoutsmtpd``, ``maxconnip``) are written out with the
registry's values, so the operator sees them. ``pop3plaintext`` is ``1`` only when every
listener is on loopback; on any other address a login needs TLS (POP3-60). Files that
already exist are left alone: the operator's edits win, except a ``pop3plaintext`` exactly as
generated for loopback, which is turned off once the listeners leave loopback.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path

from qmesh.control.registry import REGISTRY

log = logging.getLogger(__name__)

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")  # fmt: skip


def _files(me: str) -> dict[str, str]:
    return {
        "me": f"{me}\n",
        "locals": (
            "# Domains delivered locally, one per line (SEND-12). The first entry is the\n"
            "# canonical local domain: accounts created with `qmesh user add` live there.\n"
            f"{me}\n"
        ),
        "rcpthosts": (
            "# Domains this system accepts mail for from any client (SMTPD-42).\n"
            "# `.example.com` also accepts every subdomain of example.com.\n"
            "# Keep this file: it is what keeps the system from being an open relay.\n"
            f"{me}\n"
        ),
        "relayclients": (
            "# Clients allowed to relay to any domain: lines CIDR or CIDR:value, e.g.\n"
            "#   10.0.0.0/8\n"
            "#   [2001:db8::/32]:\n"
            "# None by default; users who log in with AUTH on the submission port relay.\n"
        ),
        "defaultdelivery": (
            "# Delivery instructions for an account without rules of its own.\n./Maildir/\n"
        ),
        # Single-line controls: the value is the first line, the lines after it are free text.
        "databytes": (
            f"{_default('databytes')}\n"
            "Largest message accepted, in bytes (SMTPD-55); 0 = no limit.\n"
        ),
        "timeoutsmtpd": (
            f"{_default('timeoutsmtpd')}\n"
            "Seconds a client may take for one command line or one read in DATA.\n"
        ),
        "maxconnip": (
            f"{_default('maxconnip')}\n"
            "Connections one client address may hold open at once; 0 = no limit.\n"
        ),
    }


def _default(name: str) -> int:
    value = REGISTRY[name].default
    assert isinstance(value, int)
    return value


PLAINTEXT_LOOPBACK = (
    "1\n"
    "1: POP3 logins without TLS are allowed (POP3-60). Written because qmesh up listened on\n"
    "loopback only; turned off when the listeners leave loopback.\n"
)
PLAINTEXT_OFF = (
    "0\n"
    "0: POP3 logins need TLS (STLS, or port 995; see tlscert and tlskey), because the\n"
    "listeners are reachable from other machines (POP3-60).\n"
)


def is_loopback(host: str) -> bool:
    """Whether a listen address reaches this machine only (``""`` and ``::`` mean all)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, or all addresses


def guard_plaintext(control_dir: Path, listen_host: str) -> bool:
    """Turn off a ``pop3plaintext`` generated for loopback once ``listen_host`` is not.

    ``True`` if it changed the file. A file the operator wrote is never touched.
    """
    path = control_dir / "pop3plaintext"
    if is_loopback(listen_host):
        return False
    try:
        if path.read_text(encoding="utf-8") != PLAINTEXT_LOOPBACK:
            return False
    except FileNotFoundError:
        return False
    path.write_text(PLAINTEXT_OFF, encoding="utf-8")
    log.warning(
        "control.pop3plaintext_off",
        extra={"control_dir": str(control_dir), "listen_host": listen_host},
    )
    return True


def write_default_controls(control_dir: Path, me: str, *, listen_host: str = "") -> None:
    """Create ``control_dir`` with ``me``, ``locals``, ``rcpthosts``, the limits and
    ``pop3plaintext`` (``1`` only when ``listen_host`` is loopback).

    Existing files are kept. Raises ``ValueError`` if ``me`` is not a host name.
    """
    if not _HOSTNAME.fullmatch(me):
        raise ValueError(f"{me!r} is not a host name (letters, digits, '-' and '.')")
    control_dir.mkdir(parents=True, exist_ok=True)
    created = []
    files = _files(me)
    files["pop3plaintext"] = PLAINTEXT_LOOPBACK if is_loopback(listen_host) else PLAINTEXT_OFF
    for name, text in files.items():
        try:
            with (control_dir / name).open("x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            continue
        created.append(name)
    if created:
        log.info("control.created", extra={"control_dir": str(control_dir), "files": created})
