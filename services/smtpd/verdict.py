"""A decision of smtpd as a value: accept, temporary or permanent (STYLE 14, defences #12).

Every check (recipient policy, the end of DATA, the queue, limits, content filters) returns a
:class:`Verdict`; each protocol formats it once: :meth:`Verdict.smtp` for an SMTP reply line
(SMTPD-83's enhanced code after the reply code), :meth:`Verdict.qmtp` for a QMTP ``K``/``Z``/``D``
response (QMTP-13), :attr:`Verdict.outcome` for metrics and logs. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["accept", "temporary", "permanent"]
Outcome = Literal["accepted", "deferred", "rejected"]

_REPLY = re.compile(r"^([2-5]\d\d)(?: ([245]\.\d{1,3}\.\d{1,3}))? (.*)$", re.DOTALL)
_QQ_CODE = re.compile(r"\(#([45]\.\d{1,3}\.\d{1,3})\)$")
_OUTCOME: dict[Kind, Outcome] = {
    "accept": "accepted",
    "temporary": "deferred",
    "permanent": "rejected",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One reply: ``code`` (e.g. 451), ``enhanced`` (``"4.7.0"``, or empty) and ``text``."""

    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"not a reply code: {self.code}")
        if self.enhanced and self.enhanced[0] != str(self.code)[0]:
            raise ValueError(f"enhanced code {self.enhanced} does not match {self.code}")

    @classmethod
    def of(cls, reply: str) -> Verdict:
        """A reply constant as written (``"553 5.7.1 text"``), parsed once where it is defined."""
        match = _REPLY.match(reply)
        if match is None:
            raise ValueError(f"not an SMTP reply: {reply!r}")
        code, enhanced, text = match.groups()
        return cls(int(code), enhanced or "", text)

    @classmethod
    def qq(cls, code: int, text: str) -> Verdict:
        """A qmail-style text ending in ``(#x.y.z)``; that code is the enhanced code (SMTPD-60)."""
        match = _QQ_CODE.search(text)
        enhanced = match.group(1) if match else f"{str(code)[0]}.3.0"
        return cls(code, enhanced, text)

    @property
    def kind(self) -> Kind:
        if self.code < 400:
            return "accept"
        return "temporary" if self.code < 500 else "permanent"

    @property
    def accepted(self) -> bool:
        return self.code < 400

    @property
    def outcome(self) -> Outcome:
        """The metrics label: ``accepted``, ``deferred`` or ``rejected``."""
        return _OUTCOME[self.kind]

    def smtp(self) -> str:
        if self.enhanced:
            return f"{self.code} {self.enhanced} {self.text}"
        return f"{self.code} {self.text}"

    def qmtp(self) -> bytes:
        """QMTP-13: ``K`` text, or ``Z``/``D`` text ending in its ``(#x.y.z)``."""
        if self.accepted:
            return b"K" + self.text.encode()
        text = self.text
        if self.enhanced and "(#" not in text:
            text += f" (#{self.enhanced})"
        return (b"Z" if self.kind == "temporary" else b"D") + text.encode()


def accept(code: int, enhanced: str, text: str) -> Verdict:
    return Verdict(code, enhanced, text)


def temporary(text: str, *, code: int = 451, enhanced: str = "4.3.0") -> Verdict:
    return Verdict(code, enhanced, text)


def permanent(text: str, *, code: int = 554, enhanced: str = "5.7.1") -> Verdict:
    return Verdict(code, enhanced, text)
