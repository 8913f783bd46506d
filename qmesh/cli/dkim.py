"""``qmesh dkim keygen`` and ``qmesh dkim activate``: DKIM keys in the control directory.

``keygen DOMAIN [--selector S] [--algorithm rsa|ed25519]`` writes a new private key to
``domainkeys/DOMAIN/S`` (mode 0600; an existing key is never overwritten) and prints its TXT
record, ``S._domainkey.DOMAIN``, on standard output. The first key of an algorithm for a
domain becomes active at once (it is added to ``domainkeys/DOMAIN/selector``); a later one is
only written, so its record can be published before it signs. ``activate DOMAIN S`` then makes
``S`` the active selector of its algorithm; the old key stays, publishable, until removed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from qmesh.directory.errors import InvalidName
from qmesh.directory.names import domain_name
from qmesh.dkim.keyring import (
    ACTIVE_FILE,
    DEFAULT_SELECTOR,
    DIRECTORY,
    KeyringError,
    load_keyring,
)
from qmesh.dkim.keys import Algorithm, generate, parse_key, valid_selector, zone_line


def add_dkim_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dkim = sub.add_parser("dkim", help="DKIM signing keys (domainkeys/<domain>/<selector>)")
    dsub = dkim.add_subparsers(dest="action", required=True)
    keygen = dsub.add_parser("keygen", help="write a new key and print its TXT record")
    keygen.add_argument("domain")
    keygen.add_argument("--selector", help="default: the algorithm and year and month")
    keygen.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa")
    activate = dsub.add_parser("activate", help="make a selector the one that signs")
    activate.add_argument("domain")
    activate.add_argument("selector")


def default_selector(algorithm: Algorithm, today: datetime.date) -> str:
    return f"{'rsa' if algorithm == 'rsa' else 'ed'}{today:%Y%m}"


def run_dkim(args: argparse.Namespace, control: Path) -> int:
    try:
        domain = domain_name(args.domain)
    except InvalidName as err:
        sys.stderr.write(f"qmesh dkim: {err}\n")
        return 1
    try:
        if args.action == "keygen":
            return _keygen(control, domain, args.selector, args.algorithm)
        return _activate(control, domain, args.selector.lower())
    except (KeyringError, OSError) as err:
        sys.stderr.write(f"qmesh dkim: {err}\n")
        return 1


def _keygen(control: Path, domain: str, selector: str | None, algorithm: Algorithm) -> int:
    selector = (selector or default_selector(algorithm, datetime.date.today())).lower()
    if not valid_selector(selector):
        sys.stderr.write(f"qmesh dkim: {selector!r} is not a selector (DNS labels)\n")
        return 1
    directory = control / DIRECTORY / domain
    path = directory / selector
    if path.exists():
        sys.stderr.write(f"qmesh dkim: {DIRECTORY}/{domain}/{selector} exists; not replaced\n")
        return 1
    before = load_keyring(control).get(domain)  # refuses a broken directory first
    data = generate(algorithm)
    directory.mkdir(parents=True, exist_ok=True)
    _write(path, data, 0o600)
    key = parse_key(data)
    active = list(before.active) if before else []
    if not any(before.keys[s].algorithm == algorithm for s in active if before):
        if before and not (directory / ACTIVE_FILE).exists() and DEFAULT_SELECTOR in before.keys:
            active = [DEFAULT_SELECTOR]  # keep the implicit default signing
        _write(directory / ACTIVE_FILE, "".join(f"{s}\n" for s in [*active, selector]).encode())
        note = "active now: it signs as soon as remote reads it"
    else:
        note = f"not active yet: publish the record, then `qmesh dkim activate {domain} {selector}`"
    sys.stdout.write(zone_line(selector, domain, key) + "\n")
    sys.stderr.write(f"qmesh dkim: wrote {DIRECTORY}/{domain}/{selector}; {note}\n")
    return 0


def _activate(control: Path, domain: str, selector: str) -> int:
    keys = load_keyring(control).get(domain)
    if keys is None or selector not in keys.keys:
        sys.stderr.write(f"qmesh dkim: no key {DIRECTORY}/{domain}/{selector}\n")
        return 1
    algorithm = keys.keys[selector].algorithm
    active = [s for s in keys.active if keys.keys[s].algorithm != algorithm] + [selector]
    _write(control / DIRECTORY / domain / ACTIVE_FILE, "".join(f"{s}\n" for s in active).encode())
    load_keyring(control)  # the result must load, or say why
    sys.stderr.write(f"qmesh dkim: {domain} signs with {', '.join(active)}\n")
    return 0


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
