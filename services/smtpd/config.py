"""What smtpd takes from the control files, parsed once per change (SMTPD-04)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from qmesh.address import client_address
from qmesh.control import ControlError, Controls
from qmesh.routing.classify import RoutingRules
from services.smtpd.blocklist import Zone, parse_zones
from services.smtpd.policy import RelayPolicy

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SmtpdConfig:
    greeting: str
    localname: str
    relay: RelayPolicy
    relayclients: tuple[tuple[IPNetwork, str], ...] = ()
    databytes: int = 0
    maxrcpt: int = 1000
    badmailfrom: frozenset[str] = frozenset()
    rcptcheck: bool = True
    smtpauth: tuple[str, ...] = ("PLAIN", "LOGIN")
    ipme: frozenset[str] = frozenset()
    localiphost: str = ""
    timeout: float = 300.0  # one command line, one read in DATA or QMTP (SMTPD-70)
    data_timeout: float = 1200.0  # the whole of one DATA
    session_timeout: float = 3600.0  # the whole connection
    rspamd: str | None = None  # the content filter's base URL (docs/defences.md)
    rspamd_submission: bool = False  # scan authenticated submissions too
    rspamd_tempfail: bool = False  # 451 when the filter cannot be reached
    dnsbl: tuple[Zone, ...] = ()  # DNS blocklists asked at connect (docs/defences.md)
    dmarcreject: bool = False  # honour p=reject / p=quarantine (docs/deliverability.md)

    def relayclient(self, ip: str) -> str | None:
        """RELAYCLIENT for a client address from ``relayclients`` (CTL table), else ``None``."""
        addr = client_address(ip)
        if addr is None:
            return None
        for network, value in self.relayclients:
            if addr.version == network.version and addr in network:
                return value
        return None


def smtpd_config(c: Controls, interfaces: frozenset[str] = frozenset()) -> SmtpdConfig:
    """The controls smtpd reads; a missing greeting stops startup (SMTPD-01)."""
    greeting = c.smtpgreeting or c.me
    if not greeting:
        raise ControlError("smtpgreeting", "neither control/smtpgreeting nor control/me exists")
    localname = c.me or greeting.split()[0]
    return SmtpdConfig(
        greeting=greeting,
        localname=localname,
        relay=RelayPolicy(
            rcpthosts=c.rcpthosts,
            morercpthosts=c.morercpthosts,
            rules=RoutingRules.from_controls(c),
        ),
        relayclients=c.relayclients,
        databytes=c.databytes,
        maxrcpt=c.maxrcpt,
        badmailfrom=frozenset(x.lower() for x in c.badmailfrom),
        rcptcheck=c.rcptcheck,
        smtpauth=c.smtpauth,
        ipme=c.own_addresses(interfaces),
        localiphost=c.localiphost or localname,
        timeout=float(max(1, c.timeoutsmtpd)),
        data_timeout=float(c.timeoutdata),
        session_timeout=float(c.timeoutsession),
        rspamd=rspamd_url(c.rspamd),
        rspamd_submission=c.rspamdsubmission,
        rspamd_tempfail=c.rspamdtempfail,
        dnsbl=parse_zones(c.dnsbl),
        dmarcreject=c.dmarcreject,
    )


def rspamd_url(value: str | None) -> str | None:
    """``rspamd``: an ``http://`` or ``https://`` URL with a host, else startup stops."""
    if not value:
        return None
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ControlError("rspamd", f"not an http:// or https:// URL: {value!r}")
    return value
