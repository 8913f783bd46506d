"""Temporary and permanent failures, with qmail-queue's result texts (QUEUE-20).

Domain code raises :class:`Temporary` or :class:`Permanent`; each service maps them to its
protocol in one place (smtpd: 451/554, QMTP: Z/D, consumers: nak/ack plus a result).
"""

from __future__ import annotations

QQ_TEXTS: dict[int, str] = {
    11: "envelope address too long for qq (#5.1.3)",
    31: "mail server permanently rejected message (#5.3.0)",
    51: "qq out of memory (#4.3.0)",
    52: "qq timeout (#4.3.0)",
    53: "qq write error or disk full (#4.3.0)",
    54: "qq read error (#4.3.0)",
    55: "qq unable to read configuration (#4.3.0)",
    56: "qq trouble making network connection (#4.3.0)",
    61: "qq trouble in home directory (#4.3.0)",
    71: "mail server temporarily rejected message (#4.3.0)",
    72: "connection to mail server timed out (#4.4.1)",
    73: "connection to mail server rejected (#4.4.1)",
    74: "communication with mail server failed (#4.4.2)",
    81: "qq internal bug (#4.3.0)",
    91: "qq internal bug (#4.3.0)",
}


def qq_text(code: int) -> str:
    """The QUEUE-20 text for a qmail-queue result code."""
    if code in QQ_TEXTS:
        return QQ_TEXTS[code]
    if 62 <= code <= 66:
        return "qq trouble creating files in queue (#4.3.0)"
    if 11 <= code <= 40:
        return "qq permanent problem (#5.3.0)"
    return "qq temporary problem (#4.3.0)"


def qq_is_permanent(code: int) -> bool:
    return 11 <= code <= 40


class MailError(Exception):
    """A classified failure: ``text`` is what a client or a report may show."""

    permanent: bool = False

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Temporary(MailError):
    """Try again later: SMTP 4xx, QMTP/qmail ``Z``, JetStream nak."""


class Permanent(MailError):
    """Give up: SMTP 5xx, QMTP/qmail ``D``, a bounce."""

    permanent = True


class QueueFailure(MailError):
    """An enqueue failure carrying its QUEUE-20 code."""

    def __init__(self, code: int) -> None:
        super().__init__(qq_text(code))
        self.code = code
        self.permanent = qq_is_permanent(code)
