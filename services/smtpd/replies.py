"""smtpd's reply texts: qmail's wording (spec 4.11) with the enhanced codes of SMTPD-83."""

from __future__ import annotations

import re

MAIL_OK = "250 2.1.0 ok"
RCPT_OK = "250 2.1.5 ok"
MAIL_FIRST = "503 5.5.1 MAIL first (#5.5.1)"
RCPT_FIRST = "503 5.5.1 RCPT first (#5.5.1)"
GO_AHEAD = "354 go ahead"
QQT_FAILURE = "451 4.3.0 qqt failure (#4.3.0)"
BADMAILFROM = "553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1)"
NO_MAILBOX = "550 5.1.1 sorry, no mailbox here by that name"
LOOKUP_FAILED = "451 4.3.0 temporary recipient lookup failure"
TOO_MANY_RCPTS = "452 4.5.3 too many recipients"
FLUSHED = "250 2.0.0 flushed"
OK = "250 2.0.0 ok"
VRFY = "252 2.0.0 send some mail, i'll try my best"
HELP = "214 2.0.0 qmesh: qmail's behaviour, see https://cr.yp.to/qmail.html"
UNIMPLEMENTED = "502 5.5.1 unimplemented (#5.5.1)"
NUL_IN_COMMAND = "501 5.5.2 syntax error"
LINE_TOO_LONG = "500 5.5.2 line too long"
HELO_ARGUMENT = "501 5.5.4 HELO/EHLO requires a domain"
TIMEOUT = "451 4.4.2 timeout (#4.4.2)"
TOO_MANY_CONNECTIONS = "421 4.7.0 too many connections from your address (#4.7.0)"
CONTROLS = "421 4.3.0 unable to read controls (#4.3.0)"
TLS_READY = "220 2.0.0 ready to start TLS"
TLS_ACTIVE = "503 5.5.1 already using TLS"
SYNTAX = "501 5.5.4 syntax error"
AUTH_REQUIRED = "530 5.7.0 authentication required"
AUTH_NEEDS_TLS = "538 5.7.11 encryption required for requested authentication mechanism"
AUTH_OK = "235 2.7.0 authentication successful"
AUTH_FAILED = "535 5.7.8 authentication credentials invalid"
AUTH_CANCELLED = "501 5.7.0 authentication cancelled"
AUTH_BASE64 = "501 5.5.2 cannot decode the response"
AUTH_MECHANISM = "504 5.5.4 unrecognized authentication mechanism"
AUTH_NOT_NOW = "503 5.5.1 already authenticated or inside a transaction"
AUTH_TEMPORARY = "454 4.7.0 temporary authentication failure"

_QQ_CODE = re.compile(r"\(#(\d\.\d{1,3}\.\d{1,3})\)$")


def queue_failure(text: str, permanent: bool) -> str:
    """SMTPD-60: ``451``/``554`` plus the QUEUE-20 reason, its ``(#x.y.z)`` as enhanced code."""
    match = _QQ_CODE.search(text)
    enhanced = match.group(1) if match else ("5.3.0" if permanent else "4.3.0")
    return f"{'554' if permanent else '451'} {enhanced} {text}"


def accepted(at: float, qp: int) -> str:
    """SMTPD-57: only after the message is durable (ARCH-01)."""
    return f"250 2.0.0 ok {int(at)} qp {qp}"


def shutting_down(greeting: str) -> str:
    return f"421 4.3.2 {greeting} service shutting down, closing connection"
