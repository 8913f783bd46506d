"""The effective value of every control, typed: what services are handed at startup.

One attribute per control of :mod:`qmesh.control.registry`, with the defaults of spec 2.2
already applied (``me``-dependent ones included) and the environment overrides of spec 2.3.
Domain lists that consumers match against are lower-cased sets (CTL-05); lists whose order
or spelling matters stay tuples as written. A service copies what it needs into its own frozen
``…Controls``; the policy (SMTPD-42, SEND-26 ...) is the service's, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from qmesh.control.parse import Network

Source = Literal["file", "default", "env"]
BounceFormat = Literal["dsn", "qsbmf"]


@dataclass(frozen=True, slots=True)
class Controls:
    me: str | None
    smtpgreeting: str | None
    localiphost: str | None
    timeoutsmtpd: int
    rcpthosts: frozenset[str] | None  # None: the file is missing (SMTPD-42)
    morercpthosts: frozenset[str]
    badmailfrom: frozenset[str]
    databytes: int
    locals: tuple[str, ...]  # as written, in file order: the first is canonical (SEND-16)
    virtualdomains: tuple[tuple[str, str], ...]  # (key, prepend) as written
    percenthack: frozenset[str]
    envnoathost: str
    queuelifetime: int
    concurrencylocal: int
    concurrencyremote: int
    bouncefrom: str
    bouncehost: str
    doublebounceto: str  # may be empty (BOUNCE-11)
    doublebouncehost: str
    helohost: str | None
    smtproutes: tuple[tuple[str, str], ...]  # (key, relay part as written)
    qmtproutes: tuple[tuple[str, str], ...]
    timeoutremote: int
    timeoutconnect: int
    defaultdomain: str
    defaulthost: str
    plusdomain: str
    idhost: str
    relayclients: tuple[tuple[Network, str], ...]  # (network, RELAYCLIENT value)
    proxyclients: tuple[Network, ...]
    ipme: tuple[str, ...]
    rcptcheck: bool
    maxrcpt: int
    smtpauth: tuple[str, ...]  # upper-case SASL mechanism names
    tlscert: Path | None
    tlskey: Path | None
    submissionports: tuple[int, ...]
    bounceformat: BounceFormat
    bouncemaxbytes: int
    programdelivery: bool
    defaultdelivery: str
    pop3plaintext: bool
    spawnlimit: int
    maxconnip: int
    timeoutdata: int
    timeoutsession: int
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)
    # defences (docs/defences.md); defaults here too, so older callers need not name them
    clientconnections: int = 0
    netconnections: int = 0
    clientmessages: int = 0
    clientrecipients: int = 0
    authfailures: int = 10
    loginfailures: int = 30
    authblock: int = 900
    authdelay: int = 1000
    rspamd: str | None = None
    rspamdsubmission: bool = False
    rspamdtempfail: bool = False
    dnsbl: tuple[str, ...] = ()
    dmarcreject: bool = False

    def me_or(self, literal: str) -> str:
        """The "``me``, else ``literal``" default of spec 2.2."""
        return self.me if self.me is not None else literal

    def canonical_local_domain(self) -> str | None:
        """SEND-16: the first entry of ``locals``, else ``me``; lower-cased. ``None``: neither."""
        first = self.locals[0] if self.locals else self.me
        return first.lower() if first is not None else None

    def rcpthosts_with_more(self) -> frozenset[str] | None:
        """``rcpthosts`` plus ``morercpthosts``, which counts only if ``rcpthosts`` exists."""
        if self.rcpthosts is None:
            return None
        return self.rcpthosts | self.morercpthosts

    def own_addresses(self, interfaces: Iterable[str]) -> frozenset[str]:
        """This system's IP addresses (SMTPD-41, REMOTE-16).

        A configured ``ipme`` is the whole answer (behind NAT the pod cannot see its public
        addresses); without it, the default addresses plus the pod's ``interfaces``.
        """
        if self.source("ipme") == "file":
            return frozenset(self.ipme)
        return frozenset(self.ipme) | frozenset(interfaces)

    def source(self, name: str) -> Source:
        """Where the value of control ``name`` came from: its file, the default, or env."""
        return self.sources.get(name, "default")

    def changed(self, other: Controls) -> tuple[str, ...]:
        """Names of the controls whose values differ between ``self`` and ``other``."""
        return tuple(
            f.name
            for f in fields(self)
            if f.name != "sources" and getattr(self, f.name) != getattr(other, f.name)
        )


CONTROL_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Controls) if f.name != "sources")
