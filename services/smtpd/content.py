"""What a content filter's answer means for the message (defences #12). Pure: no I/O.

Rspamd's ``/checkv2`` answers with an action; it becomes the message's :class:`Verdict`, and a
scanned message that is taken gets ``X-Spam-*`` header lines a delivery rule can file on
(``X-Spam-Flag: YES`` goes to Junk):

| action | verdict |
|---|---|
| ``reject`` | ``554 5.7.1`` |
| ``soft reject``, ``greylist`` | ``451 4.7.1`` |
| ``add header``, ``rewrite subject`` | accepted, ``X-Spam-Flag: YES`` |
| ``no action`` (or anything else) | accepted, ``X-Spam-Flag: NO`` |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from services.smtpd.verdict import Verdict

REJECTED = Verdict.of("554 5.7.1 message rejected as spam (#5.7.1)")
LATER = Verdict.of("451 4.7.1 message deferred by the content filter, try again later (#4.7.1)")
UNAVAILABLE = Verdict.of("451 4.7.1 content filter unavailable, try again later (#4.7.1)")
SPAM_ACTIONS = frozenset({"add header", "rewrite subject"})


@dataclass(frozen=True, slots=True)
class Scan:
    """A filter's judgement: the refusal, if any, and the header lines to add if taken."""

    action: str
    refusal: Verdict | None = None
    headers: bytes = b""
    score: float = 0.0


def _number(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0


def _word(value: object) -> str:
    """An action name as Rspamd spells it, or ``unknown``: nothing else reaches a header."""
    text = value if isinstance(value, str) else ""
    text = text.strip().lower()
    if len(text) > 32 or not all(c.isalpha() or c in " -_" for c in text) or not text:
        return "unknown"
    return text


def judge(answer: Mapping[str, object]) -> Scan:
    """The scan for one ``/checkv2`` JSON answer (any shape: it is parsed as untrusted)."""
    action = _word(answer.get("action"))
    score = _number(answer.get("score"))
    required = _number(answer.get("required_score"))
    if action == "reject":
        return Scan(action, REJECTED, score=score)
    if action in ("soft reject", "greylist"):
        return Scan(action, LATER, score=score)
    flag = "YES" if action in SPAM_ACTIONS else "NO"
    headers = (
        f"X-Spam-Flag: {flag}\nX-Spam-Score: {score:.2f} / {required:.2f}\n"
        f"X-Spam-Action: {action}\n"
    ).encode()
    return Scan(action, None, headers, score)
