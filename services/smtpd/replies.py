"""smtpd's reply texts: qmail's wording (spec 4.11) with the enhanced codes of SMTPD-83."""

from __future__ import annotations

from services.smtpd.verdict import Verdict

MAIL_OK = Verdict.of("250 2.1.0 ok")
RCPT_OK = Verdict.of("250 2.1.5 ok")
MAIL_FIRST = Verdict.of("503 5.5.1 MAIL first (#5.5.1)")
RCPT_FIRST = Verdict.of("503 5.5.1 RCPT first (#5.5.1)")
GO_AHEAD = Verdict.of("354 go ahead")
QQT_FAILURE = Verdict.of("451 4.3.0 qqt failure (#4.3.0)")
BADMAILFROM = Verdict.of("553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1)")
NO_MAILBOX = Verdict.of("550 5.1.1 sorry, no mailbox here by that name")
LOOKUP_FAILED = Verdict.of("451 4.3.0 temporary recipient lookup failure")
TOO_MANY_RCPTS = Verdict.of("452 4.5.3 too many recipients")
FLUSHED = Verdict.of("250 2.0.0 flushed")
OK = Verdict.of("250 2.0.0 ok")
VRFY = Verdict.of("252 2.0.0 send some mail, i'll try my best")
HELP = Verdict.of("214 2.0.0 qmesh: qmail's behaviour, see https://cr.yp.to/qmail.html")
UNIMPLEMENTED = Verdict.of("502 5.5.1 unimplemented (#5.5.1)")
NUL_IN_COMMAND = Verdict.of("501 5.5.2 syntax error")
LINE_TOO_LONG = Verdict.of("500 5.5.2 line too long")
HELO_ARGUMENT = Verdict.of("501 5.5.4 HELO/EHLO requires a domain")
TIMEOUT = Verdict.of("451 4.4.2 timeout (#4.4.2)")
TOO_MANY_CONNECTIONS = Verdict.of("421 4.7.0 too many connections from your address (#4.7.0)")
CONTROLS = Verdict.of("421 4.3.0 unable to read controls (#4.3.0)")
TLS_READY = Verdict.of("220 2.0.0 ready to start TLS")
TLS_ACTIVE = Verdict.of("503 5.5.1 already using TLS")
SYNTAX = Verdict.of("501 5.5.4 syntax error")
AUTH_REQUIRED = Verdict.of("530 5.7.0 authentication required")
AUTH_NEEDS_TLS = Verdict.of("538 5.7.11 encryption required for requested authentication mechanism")
AUTH_OK = Verdict.of("235 2.7.0 authentication successful")
AUTH_FAILED = Verdict.of("535 5.7.8 authentication credentials invalid")
AUTH_CANCELLED = Verdict.of("501 5.7.0 authentication cancelled")
AUTH_BASE64 = Verdict.of("501 5.5.2 cannot decode the response")
AUTH_MECHANISM = Verdict.of("504 5.5.4 unrecognized authentication mechanism")
AUTH_NOT_NOW = Verdict.of("503 5.5.1 already authenticated or inside a transaction")
AUTH_TEMPORARY = Verdict.of("454 4.7.0 temporary authentication failure")
# cluster-wide limits (docs/defences.md)
AUTH_BLOCKED = Verdict.of("421 4.7.0 too many failed logins, try again later (#4.7.0)")
TOO_MANY_NET_CONNECTIONS = Verdict.of("421 4.7.0 too many connections from your network (#4.7.0)")
TOO_MANY_RECIPIENTS = Verdict.of(
    "451 4.7.0 too many recipients from your address, try again later (#4.7.0)"
)
TOO_MANY_MESSAGES = Verdict.of(
    "451 4.7.0 too many messages from your address, try again later (#4.7.0)"
)


def queue_failure(text: str, permanent: bool) -> Verdict:
    """SMTPD-60: ``451``/``554`` plus the QUEUE-20 reason, its ``(#x.y.z)`` as enhanced code."""
    return Verdict.qq(554 if permanent else 451, text)


def accepted(at: float, qp: int) -> Verdict:
    """SMTPD-57: only after the message is durable (ARCH-01)."""
    return Verdict(250, "2.0.0", f"ok {int(at)} qp {qp}")


def shutting_down(greeting: str) -> Verdict:
    return Verdict(421, "4.3.2", f"{greeting} service shutting down, closing connection")
