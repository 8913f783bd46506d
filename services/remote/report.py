"""Report texts of remote deliveries, in qmail-remote's wording (REMOTE-13..46, QMTP-32).

Pure. A report is one or more lines, each ending in LF. Every report that follows a server
reply ends with ``Remote host said: `` and that reply: all its lines, CRs removed, NUL shown
as ``?``, at most 5000 bytes (REMOTE-30). The recipient's report combines the text of its RCPT
with the text of the message (REMOTE-32).
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_REPLY_TEXT = 5000

DNS_TEMPORARY = "Sorry, I couldn't find any host by that name. (#4.1.2)\n"
NO_ADDRESS = "Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n"
NULL_MX = "Domain does not accept mail (null MX). (#5.1.10)\n"
AMBIGUOUS_MX = (
    "Sorry. Although I'm listed as a best-preference MX or A for that host, "
    "it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n"
)
NO_CONNECTION = "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
NO_QMTP_CONNECTION = "Sorry, I wasn't able to establish a QMTP connection. (#4.4.1)\n"
CONTROLS = "Unable to read control files. (#4.3.0)\n"
MESSAGE_UNREADABLE = "Unable to read message. (#4.3.0)\n"
TOO_BIG = "Message is too big for the remote host. (#5.3.4)\n"
NO_SMTPUTF8 = "Remote host does not support SMTPUTF8. (#5.6.7)\n"
UNSENDABLE_ADDRESS = "Sorry, an address with CR or LF in it cannot be sent by SMTP. (#5.1.3)\n"
INTERNAL = "Internal error in remote delivery; will try again. (#4.3.0)\n"


def no_host(host: str) -> str:
    return f"Sorry, I couldn't find any host named {host}. (#5.1.2)\n"


def bad_route(reason: str) -> str:
    """REMOTE-34: a route that cannot be used is a control that cannot be read."""
    return f"Unable to read control files: {reason}. (#4.3.0)\n"


def remote_said(reply: Sequence[bytes]) -> str:
    """``Remote host said: `` and the reply lines (REMOTE-30)."""
    raw = b"".join(line.replace(b"\r", b"").replace(b"\0", b"?") + b"\n" for line in reply)
    if len(raw) > MAX_REPLY_TEXT:
        raw = raw[:MAX_REPLY_TEXT]
    return "Remote host said: " + raw.decode("utf-8", "replace")


def _said(text: str, reply: Sequence[bytes] | None) -> str:
    return text + "\n" + (remote_said(reply) if reply else "")


def greeting_failed(ip: str, reply: Sequence[bytes]) -> str:
    return _said(f"Connected to {ip} but greeting failed.", reply)


def name_rejected(ip: str, reply: Sequence[bytes]) -> str:
    return _said(f"Connected to {ip} but my name was rejected.", reply)


def sender_rejected(ip: str, reply: Sequence[bytes]) -> str:
    return _said(f"Connected to {ip} but sender was rejected.", reply)


def recipient_rejected(ip: str, reply: Sequence[bytes]) -> str:
    return _said(f"{ip} does not like recipient.", reply)


def giving_up(ip: str) -> str:
    return f"Giving up on {ip}.\n"


def data_failed(ip: str, reply: Sequence[bytes]) -> str:
    return _said(f"{ip} failed on DATA command.", reply)


def message_failed(ip: str, reply: Sequence[bytes]) -> str:
    return _said(f"{ip} failed after I sent the message.", reply)


def accepted(ip: str, reply: Sequence[bytes]) -> str:
    return _said(f"Connected to {ip} accepted message.", reply)


def connection_died(ip: str, *, possible_duplicate: bool) -> str:
    """REMOTE-33: a timeout or a dropped connection during the dialogue."""
    duplicate = "Possible duplicate! " if possible_duplicate else ""
    return f"Connected to {ip} but connection died. {duplicate}(#4.4.2)\n"


def tls_failed(ip: str, reason: str) -> str:
    """REMOTE-42: the handshake failed and the plaintext retry could not be made."""
    return f"Connected to {ip} but the TLS handshake failed: {reason}. (#4.4.2)\n"


def qmtp_malformed(ip: str) -> str:
    """QMTP-32: a response that is not a K/Z/D netstring; the server may have taken it."""
    return f"Connected to {ip} but the QMTP response was malformed. Possible duplicate! (#4.4.2)\n"


def combined(recipient_text: str, message_text: str) -> str:
    """REMOTE-32: the recipient's own text, then the message's."""
    return recipient_text + message_text


def tls_required(ip: str, policy: str, reason: str) -> str:
    """RFC 8461 section 5, RFC 7672 section 2.2: the domain's policy requires authenticated
    TLS and this server did not give it; the message waits (another MX, a later attempt)."""
    return f"Connected to {ip} but {policy} requires authenticated TLS: {reason}. (#4.7.5)\n"


def no_policy_mx(domain: str) -> str:
    """RFC 8461 section 4.1: no MX host of ``domain`` matches its enforced MTA-STS policy."""
    return (
        f"Sorry, no mail exchanger of {domain} matches its MTA-STS policy (enforce); "
        "not delivering without it. (#4.7.5)\n"
    )


def tlsa_unavailable(mx: str) -> str:
    """RFC 7672 section 2.2: the TLSA records of a DNSSEC-signed MX could not be looked up."""
    return (
        f"Sorry, the TLSA records of {mx} could not be looked up (DNSSEC); "
        "not delivering without them. (#4.7.5)\n"
    )
