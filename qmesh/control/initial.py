"""A first control directory for ``qmesh up``: enough to receive and deliver, never a relay.

``rcpthosts`` is always written, and ``relayclients`` only explains itself, so a newcomer's
cluster accepts mail for its own name and relays for nobody (SMTPD-42). Files that already
exist are left alone: the operator's edits win.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

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
    }


def write_default_controls(control_dir: Path, me: str) -> None:
    """Create ``control_dir`` with ``me``, ``locals``, ``rcpthosts`` and ``defaultdelivery``.

    Existing files are kept. Raises ``ValueError`` if ``me`` is not a host name.
    """
    if not _HOSTNAME.fullmatch(me):
        raise ValueError(f"{me!r} is not a host name (letters, digits, '-' and '.')")
    control_dir.mkdir(parents=True, exist_ok=True)
    created = []
    for name, text in _files(me).items():
        try:
            with (control_dir / name).open("x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            continue
        created.append(name)
    if created:
        log.info("control.created", extra={"control_dir": str(control_dir), "files": created})
