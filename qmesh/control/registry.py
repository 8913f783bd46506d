"""Every control file: name, kind, default, the services that read it (our qmail-control(5)).

The table follows spec section 2.2 (qmail's controls, then the [EXT] ones of this system).
``docs/controls.md`` is generated from it (:mod:`qmesh.control.reference`) and a unit test
keeps the two equal. The loader (:mod:`qmesh.control.loader`) turns the files into one typed,
frozen :class:`~qmesh.control.loader.Controls`; this module only describes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["line", "number", "list", "text"]
ServiceName = Literal[
    "smtpd", "send", "local", "remote", "pop3d", "inject", "imapd", "admin", "webmail"
]

ALL: tuple[ServiceName, ...] = ("smtpd", "send", "local", "remote", "pop3d", "inject", "imapd")

# The shipped message size limit (50 MiB, between Postfix's 10 MB and Stalwart's): qmail's 0
# lets one client fill the queue store with a single message.
DATABYTES = 52428800


@dataclass(frozen=True, slots=True)
class MeOr:
    """Default "``me``, else ``literal``": the value of ``me`` if it exists (spec 2.2).

    ``literal=None`` means there is no fallback: without ``me`` the control has no value.
    """

    literal: str | None = None


Default = MeOr | str | int | bool | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class ControlSpec:
    name: str
    kind: Kind
    default: Default
    used_by: tuple[ServiceName, ...]
    description: str
    ext: bool = False  # introduced by this system, not by qmail


def _c(
    name: str,
    kind: Kind,
    default: Default,
    used_by: tuple[ServiceName, ...],
    description: str,
    *,
    ext: bool = False,
) -> ControlSpec:
    return ControlSpec(name, kind, default, used_by, description, ext)


# fmt: off
SPECS: tuple[ControlSpec, ...] = (
    # qmail's controls (spec 2.2, first table)
    _c("me", "line", None, ALL,
       "Fully-qualified name of this mail system; default of most host-name controls."),
    _c("smtpgreeting", "line", MeOr(), ("smtpd",),
       "Text after `220 ` in the greeting and in HELO/EHLO/QUIT replies; without it and "
       "without `me` smtpd answers 421."),
    _c("localiphost", "line", MeOr(), ("smtpd",),
       "Replaces `[a.b.c.d]` in `box@[a.b.c.d]` when the address is in `ipme` (SMTPD-41)."),
    _c("timeoutsmtpd", "number", 300, ("smtpd",),
       "Seconds an SMTP client may take for one whole command line, and smtpd waits for each "
       "read in DATA and QMTP; 0 means 1 (SMTPD-70). qmail's 1200 is kinder to trickling "
       "clients than a public server can afford."),
    _c("rcpthosts", "list", None, ("smtpd",),
       "Domains accepted from non-relay clients; `.host` matches subdomains. When missing, "
       "only hosted domains are accepted, never an open relay (SMTPD-42)."),
    _c("morercpthosts", "list", None, ("smtpd",),
       "More `rcpthosts` entries; consulted only if `rcpthosts` exists."),
    _c("badmailfrom", "list", None, ("smtpd",),
       "Envelope senders refused at MAIL: full addresses or `@domain` (SMTPD-35)."),
    _c("databytes", "number", DATABYTES, ("smtpd", "webmail"),
       "Maximum message size in stored-form bytes (SMTPD-55, QMTP-14); overridden by "
       "`DATABYTES`. `0` = unlimited as in qmail; the body streams to the store either way, "
       "so memory stays bounded (SMTPD-73)."),
    _c("locals", "list", MeOr(), ("send", "smtpd"),
       "Domains delivered locally (SEND-12); the first entry is the canonical local domain "
       "(SEND-16). Without it and without `me`, send refuses to start."),
    _c("virtualdomains", "list", None, ("send", "smtpd"),
       "Lines `user@domain:prepend`, `domain:prepend`, `.suffix:prepend`, `:prepend`; "
       "an empty prepend is an exception (SEND-13)."),
    _c("percenthack", "list", None, ("send", "smtpd"),
       "Domains at which `user%host@domain` becomes `user@host` (SEND-11)."),
    _c("envnoathost", "line", MeOr("envnoathost"), ("send",),
       "Domain appended to envelope recipients without `@` (SEND-10)."),
    _c("queuelifetime", "number", 604800, ("send",),
       "Seconds a message may stay queued (SEND-24)."),
    _c("concurrencylocal", "number", 10, ("send",),
       "Maximum simultaneous local deliveries, cluster-wide; 0 = on hold."),
    _c("concurrencyremote", "number", 20, ("send",),
       "Maximum simultaneous remote deliveries, cluster-wide; 0 = on hold."),
    _c("bouncefrom", "line", "MAILER-DAEMON", ("send",),
       "Local part of the bounce `From:` header."),
    _c("bouncehost", "line", MeOr("bouncehost"), ("send",),
       "Domain of the bounce `From:` and the host named in the bounce text."),
    _c("doublebounceto", "line", "postmaster", ("send",),
       "Local part that receives double bounces; an empty first line discards them "
       "(BOUNCE-11)."),
    _c("doublebouncehost", "line", MeOr("doublebouncehost"), ("send",),
       "Domain of `doublebounceto`."),
    _c("helohost", "line", MeOr(), ("remote",),
       "Name sent in HELO/EHLO; without it and without `me` remote deliveries fail "
       "temporarily."),
    _c("smtproutes", "list", None, ("remote",),
       "Static routes `domain:relay[:port]`, `.suffix:...`, `:relay` (REMOTE-10)."),
    _c("qmtproutes", "list", None, ("remote",),
       "Like `smtproutes`, but the relay speaks QMTP, default port 209 (QMTP-30).", ext=True),
    _c("timeoutremote", "number", 1200, ("remote",),
       "Seconds to wait for each read or write to a remote server."),
    _c("timeoutconnect", "number", 60, ("remote",),
       "Seconds to wait for a TCP connection to a remote server."),
    _c("defaultdomain", "line", MeOr("defaultdomain"), ("inject",),
       "Appended after a dot to host names without a dot; overridden by "
       "`QMAILDEFAULTDOMAIN`."),
    _c("defaulthost", "line", MeOr("defaulthost"), ("inject",),
       "Appended to addresses without `@`; overridden by `QMAILDEFAULTHOST`."),
    _c("plusdomain", "line", MeOr("plusdomain"), ("inject",),
       "Replaces a trailing `+` on a host name; overridden by `QMAILPLUSDOMAIN`."),
    _c("idhost", "line", MeOr("idhost"), ("inject",),
       "Host part of generated Message-IDs; overridden by `QMAILIDHOST`."),
    # controls of this system (spec 2.2, second table)
    _c("relayclients", "list", None, ("smtpd",),
       "Lines `CIDR` or `CIDR:value` (IPv6 in brackets when a value follows); clients inside "
       "get `RELAYCLIENT=value` (SMTPD-42).", ext=True),
    _c("proxyclients", "list", None, ("smtpd", "pop3d", "imapd"),
       "CIDRs of load balancers whose PROXY protocol v1/v2 headers are accepted; none = "
       "PROXY off (SMTPD-86).", ext=True),
    _c("ipme", "list", ("0.0.0.0", "127.0.0.1"), ("smtpd", "remote"),
       "Public IP addresses of this mail system (SMTPD-41, REMOTE-16); when missing, the "
       "pod's interface addresses plus the defaults.", ext=True),
    _c("rcptcheck", "line", True, ("smtpd",),
       "`1`: verify local recipients at RCPT (SMTPD-45); `0`: accept and bounce later.",
       ext=True),
    _c("maxrcpt", "number", 1000, ("smtpd",),
       "Recipients per transaction before `452` (SMTPD-44).", ext=True),
    _c("smtpauth", "list", ("PLAIN", "LOGIN"), ("smtpd",),
       "SASL mechanisms offered after TLS, separated by spaces or lines (SMTPD-81); by "
       "default on the submission ports only (SMTPD-82).", ext=True),
    _c("tlscert", "line", None, ("smtpd", "pop3d", "imapd"),
       "PEM certificate chain: the file itself, or a first line naming a file (relative to "
       "the control directory). With `tlskey`, STARTTLS/STLS are offered.", ext=True),
    _c("tlskey", "line", None, ("smtpd", "pop3d", "imapd"),
       "PEM private key of `tlscert`, in the file itself or in the file its first line "
       "names.", ext=True),
    _c("submissionports", "list", ("587", "465"), ("smtpd",),
       "Listener ports (as the clients see them) that require AUTH before MAIL (SMTPD-82).",
       ext=True),
    _c("bounceformat", "line", "dsn", ("send",),
       "`dsn` (RFC 3464, BOUNCE-20) or `qsbmf` (plain qmail bounce).", ext=True),
    _c("bouncemaxbytes", "number", 0, ("send",),
       "If non-zero and the original is larger, bounces return only its header.", ext=True),
    _c("programdelivery", "line", False, ("local",),
       "`1` allows program (`|`) rule lines (LOCAL-18); `0` makes each one a temporary "
       "failure.", ext=True),
    _c("defaultdelivery", "text", "./Maildir/\n", ("local",),
       "Delivery instructions (`.qmail` lines) for an account without a rule `\"\"` or with "
       "an empty one.", ext=True),
    _c("pop3plaintext", "line", False, ("pop3d", "imapd"),
       "`1` allows USER/PASS and SASL PLAIN without TLS (POP3-60); for imapd LOGIN and "
       "AUTHENTICATE PLAIN (#13).", ext=True),
    _c("spawnlimit", "number", 120, ("send",),
       "Upper bound for `concurrencylocal` and `concurrencyremote`.", ext=True),
    _c("maxconnip", "number", 20, ("smtpd", "pop3d", "imapd"),
       "Connections one client address may hold at once on one replica, all listeners of the "
       "service together (IPv6 counted per /64; behind a balancer, the PROXY header's address); "
       "more get `421` (SMTP) or `-ERR [SYS/TEMP]` (POP3) and are closed. `0` = no limit "
       "(SMTPD-73).", ext=True),
    _c("timeoutdata", "number", 1200, ("smtpd",),
       "Seconds the whole of one DATA may take, however steadily the bytes trickle in; then "
       "`451` and close (SMTPD-70).", ext=True),
    _c("timeoutsession", "number", 3600, ("smtpd",),
       "Seconds one SMTP or QMTP connection may last in all (QMTP-01's hour); then `451` "
       "(SMTP) or close (SMTPD-70).", ext=True),
    # defences at the door (docs/defences.md): limits held across every replica
    _c("clientconnections", "number", 0, ("smtpd", "pop3d"),
       "Connections one client address (IPv6: its /64) may hold at once across all replicas "
       "of the service; more get `421 4.7.0` (SMTP) or `-ERR [IN-USE]` (POP3). `0` = no "
       "limit (each replica still applies `maxconnip`). `relayclients` are exempt.", ext=True),
    _c("netconnections", "number", 0, ("smtpd", "pop3d"),
       "As `clientconnections`, for a client's network (IPv4 /24, IPv6 /48).", ext=True),
    _c("clientmessages", "number", 0, ("smtpd",),
       "Messages one client address may send per minute across all replicas; more get "
       "`451 4.7.0` at the end of DATA (`Z` for a QMTP package). `0` = no limit. "
       "`relayclients` and authenticated clients are exempt.", ext=True),
    _c("clientrecipients", "number", 0, ("smtpd",),
       "Recipients one client address may send to per minute across all replicas, counted at "
       "RCPT: the one past it gets `451 4.7.0` (QMTP: the package, `Z`). `0` = no limit. "
       "Exempt as `clientmessages`.", ext=True),
    _c("authfailures", "number", 10, ("smtpd", "pop3d", "imapd", "admin", "webmail"),
       "Failed logins from one client address within `authblock` seconds before it is "
       "refused every login (`421 4.7.0`, `-ERR [SYS/TEMP]`, `NO [UNAVAILABLE]`, HTTP 429 "
       "on the admin and webmail pages) until `authblock` seconds after its last failure. "
       "`0` = never blocked.", ext=True),
    _c("loginfailures", "number", 30, ("smtpd", "pop3d", "imapd", "admin", "webmail"),
       "Failed logins for one login name within `authblock` seconds after which clients that "
       "have failed before are refused for it; a client without failures may still log in. "
       "`0` = off.", ext=True),
    _c("authblock", "number", 900, ("smtpd", "pop3d", "imapd", "admin", "webmail"),
       "Seconds failed logins are remembered (and a block lasts) after the last one.",
       ext=True),
    _c("authdelay", "number", 1000, ("smtpd", "pop3d", "imapd", "admin", "webmail"),
       "Milliseconds before the reply to a client's first failed login; the n-th waits n "
       "times as long, up to 15 seconds.", ext=True),
    _c("rspamd", "line", None, ("smtpd",),
       "Base URL of an Rspamd controller or normal worker (`http://rspamd:11333`): every "
       "message is checked with `/checkv2` at the end of DATA, every QMTP package too. Absent "
       "= no content scan.",
       ext=True),
    _c("rspamdsubmission", "line", False, ("smtpd",),
       "`1` scans authenticated submissions too; `0` does not.", ext=True),
    _c("rspamdtempfail", "line", False, ("smtpd",),
       "`1` answers `451 4.7.1` when Rspamd cannot be reached; `0` accepts the message and "
       "logs `smtpd.rspamd_unavailable`.", ext=True),
    _c("dnsbl", "list", None, ("smtpd",),
       "DNS blocklist zones asked at connect (SMTP and QMTP) through `QMESH_DNS_SERVERS`, one "
       "per line: "
       "`zone` or `zone:text`; a leading `!` makes a listing permanent (`553`), else `451` "
       "with the list's TXT (rblsmtpd). `relayclients` and authenticated clients are exempt; "
       "a DNS failure never refuses.", ext=True),
    _c("dmarcreject", "line", False, ("smtpd",),
       "`1` honours a From domain's DMARC policy when a message fails DMARC (RFC 7489): "
       "`p=reject` gets `550 5.7.1` at the end of DATA (QMTP: `D`), `p=quarantine` adds "
       "`X-Qmesh-Quarantine: dmarc`. `0` only records the result in `Authentication-Results:` "
       "(authserv-id: `me`). A DNS failure never refuses. Authenticated clients, "
       "`relayclients` and 127.0.0.1/::1 are not checked (docs/deliverability.md).", ext=True),
)
# fmt: on

REGISTRY: dict[str, ControlSpec] = {spec.name: spec for spec in SPECS}

# Environment variables that override a control (spec 2.3). The other inject variables
# (QMAILHOST, QMAILUSER ...) are not controls; the inject CLI reads them itself.
ENV_OVERRIDES: dict[str, str] = {
    "DATABYTES": "databytes",
    "QMAILDEFAULTDOMAIN": "defaultdomain",
    "QMAILDEFAULTHOST": "defaulthost",
    "QMAILPLUSDOMAIN": "plusdomain",
    "QMAILIDHOST": "idhost",
}


def spec(name: str) -> ControlSpec:
    """The registered control ``name``; ``KeyError`` names an unknown one."""
    return REGISTRY[name]


def describe_default(default: Default) -> str:
    """The default as the operator reference shows it."""
    if isinstance(default, MeOr):
        return "`me`" if default.literal is None else f"`me`, else `{default.literal}`"
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "`1`" if default else "`0`"
    if isinstance(default, tuple):
        return " ".join(f"`{item}`" for item in default)
    if isinstance(default, str):
        return "`" + default.replace("\n", "\\n") + "`"
    return f"`{default}`"
