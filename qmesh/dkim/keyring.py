"""The signing keys of every domain, read from ``domainkeys/`` in the control directory.

Layout (qmail's DKIM patch): ``domainkeys/<domain>/<selector>`` holds the private key of
``<selector>._domainkey.<domain>``. Which selectors sign:

- ``domainkeys/<domain>/selector``, if present, names the active selectors, one per line
  (``#`` comments allowed). Name one RSA and one Ed25519 selector to sign with both side by
  side (RFC 8463 section 5). Keys not named there are kept, unused: an old key stays
  publishable after a rotation, a new one can be published before it signs.
- Without that file the selector ``default`` signs, if its key exists (the qmail DKIM
  patch's default key ``domainkeys/<domain>/default``).

:func:`load_keyring` reads everything once; a key that cannot be parsed, a ``selector`` file
that names a missing key, or two active keys of one algorithm stop it with
:class:`KeyringError` naming the file (CTL-06). :class:`Keys` is the component that holds the
current keyring and reads the tree again when its names, sizes or times change, checked at
most every few seconds, never per message; a reload that fails keeps the old keys (CTL-07).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qmesh.dkim.keys import KeyFileError, PrivateKey, parse_key, valid_selector

log = logging.getLogger(__name__)

DIRECTORY = "domainkeys"
ACTIVE_FILE = "selector"
DEFAULT_SELECTOR = "default"
CHECK_INTERVAL = 5.0


class KeyringError(ValueError):
    """The key directory cannot be used; the text names the file."""


@dataclass(frozen=True, slots=True)
class Selector:
    domain: str
    selector: str
    key: PrivateKey


@dataclass(frozen=True, slots=True)
class DomainKeys:
    domain: str
    keys: Mapping[str, PrivateKey]  # every key file: selector -> key
    active: tuple[str, ...]  # the selectors that sign, in the order they sign

    def signers(self) -> list[Selector]:
        return [Selector(self.domain, s, self.keys[s]) for s in self.active]


Keyring = Mapping[str, DomainKeys]


def load_keyring(control: Path) -> Keyring:
    """Every domain's keys under ``control/domainkeys``; empty when there is none."""
    root = control / DIRECTORY
    if not root.is_dir():
        return {}
    ring: dict[str, DomainKeys] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue  # ConfigMap/Secret bookkeeping (..data) and stray files
        domain = entry.name.lower()
        ring[domain] = _domain(entry, domain)
    return ring


def _domain(directory: Path, domain: str) -> DomainKeys:
    where = f"{DIRECTORY}/{directory.name}"
    keys: dict[str, PrivateKey] = {}
    for path in sorted(directory.iterdir()):
        name = path.name
        if name.startswith(".") or name == ACTIVE_FILE or not path.is_file():
            continue
        if not valid_selector(name.lower()):
            log.warning("dkim.ignored_file", extra={"file": f"{where}/{name}"})
            continue
        try:
            keys[name.lower()] = parse_key(path.read_bytes())
        except KeyFileError as err:
            raise KeyringError(f"{where}/{name}: {err}") from err
        except OSError as err:
            raise KeyringError(f"{where}/{name}: cannot read: {err.strerror}") from err
    active_path = directory / ACTIVE_FILE
    if active_path.exists():
        active = _active(active_path, f"{where}/{ACTIVE_FILE}")
        for selector in active:
            if selector not in keys:
                raise KeyringError(
                    f"{where}/{ACTIVE_FILE} names {selector!r}, but {where}/{selector} "
                    "is not a usable key file"
                )
    else:
        active = (DEFAULT_SELECTOR,) if DEFAULT_SELECTOR in keys else ()
    algorithms = [keys[s].algorithm for s in active]
    for algorithm in set(algorithms):
        if algorithms.count(algorithm) > 1:
            raise KeyringError(
                f"{where}/{ACTIVE_FILE} names more than one {algorithm} selector; "
                "one of each algorithm signs"
            )
    return DomainKeys(domain, keys, active)


def _active(path: Path, where: str) -> tuple[str, ...]:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise KeyringError(f"{where}: cannot read") from err
    found: list[str] = []
    for raw in text.splitlines():
        word = raw.split("#", 1)[0].strip().lower()
        if not word:
            continue
        if not valid_selector(word):
            raise KeyringError(f"{where}: {word[:80]!r} is not a selector")
        if word not in found:
            found.append(word)
    return tuple(found)


def _fingerprint(control: Path) -> tuple[tuple[str, int, int], ...]:
    found: list[tuple[str, int, int]] = []
    root = control / DIRECTORY
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            found.append((path, st.st_mtime_ns, st.st_size))
    return tuple(found)


class Keys:
    """The current keyring, read again when the files change (at most every few seconds)."""

    def __init__(self, control: Path, interval: float = CHECK_INTERVAL) -> None:
        self._control = control
        self._interval = interval
        self._seen = _fingerprint(control)
        self._ring = load_keyring(control)  # a bad key stops startup (CTL-06)
        self._checked = time.monotonic()

    def current(self) -> Keyring:
        now = time.monotonic()
        if now - self._checked >= self._interval:
            self._checked = now
            seen = _fingerprint(self._control)
            if seen != self._seen:
                self._seen = seen
                try:
                    self._ring = load_keyring(self._control)
                    log.info("dkim.keys_loaded", extra={"domains": len(self._ring)})
                except KeyringError as err:
                    log.error("dkim.keys_reload_failed", extra={"reason": str(err)})
        return self._ring

    def signers(self, domain: str) -> list[Selector]:
        keys = self.current().get(domain.lower().rstrip("."))
        return keys.signers() if keys is not None else []
