"""What the checks at the door found, as header lines and a decision (RFC 8601, RFC 7489). Pure.

- :class:`Checked`: the SPF results for MAIL FROM and HELO (RFC 7208), one result per DKIM
  signature (RFC 6376), DMARC (RFC 7489) and the ARC chain's validation (RFC 8617).
- :func:`header_lines`: one ``Authentication-Results:`` field under this system's authserv-id
  (the ``me`` control), folded one result a line, plus ``X-Qmesh-Quarantine: dmarc`` when
  ``dmarcreject`` is on and the From domain's ``p=quarantine`` applies.
- :func:`decide`: ``550 5.7.1`` for a DMARC ``fail`` under ``p=reject`` when ``dmarcreject`` is
  on (``pct`` below 100: quarantined instead); nothing else refuses. A ``temperror`` never
  refuses, and neither does a failure while a DKIM signature could not be judged (DNS did not
  answer, the message was too large to check).
- :class:`ResultsFilter`: removes, from a header block fed in pieces of any size, every
  incoming ``Authentication-Results:`` that claims our authserv-id (RFC 8601 section 5) and
  every ``X-Qmesh-Quarantine:``, holding at most :data:`DECIDE` bytes of a field.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass

from qmesh.auth.dkim import DkimResult
from qmesh.auth.dmarc import DmarcResult
from qmesh.auth.results import authentication_results, claims_our_id
from qmesh.auth.spf import SpfResult
from services.smtpd.verdict import Verdict

QUARANTINE = b"X-Qmesh-Quarantine: dmarc\n"
DECIDE = 8192  # bytes of one field held before it is judged on its start
UNJUDGED = frozenset({"temperror", "policy"})  # a DKIM result that says nothing either way
_ARC_RESULTS = frozenset({"none", "pass", "fail", "temperror"})
_UNSAFE = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True, slots=True)
class Checked:
    spf: SpfResult | None  # MAIL FROM (or HELO for the null sender, RFC 7208 section 2.4)
    spf_helo: SpfResult | None  # HELO (RFC 7208 section 2.3), when MAIL FROM is not empty
    dkim: Sequence[DkimResult]
    dmarc: DmarcResult
    arc: str  # none, pass, fail, temperror


def _safe(text: str, limit: int = 255) -> str:
    return _UNSAFE.sub("?", text)[:limit]


def header_lines(
    checked: Checked, authserv_id: str, *, sender: str, helo: str, dmarcreject: bool
) -> bytes:
    """The lines to put on top of the message, each ending in LF."""
    field = authentication_results(
        _safe(authserv_id),
        spf=checked.spf,
        mail_from=_safe(sender, 320),
        helo=_safe(helo),
        spf_helo=checked.spf_helo,
        dkim=checked.dkim,
        dmarc=checked.dmarc,
        arc=checked.arc if checked.arc in _ARC_RESULTS else "permerror",
        fold=True,
    )
    lines = field.encode("ascii", "replace") + b"\n"
    if dmarcreject and _fails(checked) and _policy(checked.dmarc) == "quarantine":
        lines += QUARANTINE
    return lines


def _fails(checked: Checked) -> bool:
    """A DMARC failure that is certain: no DKIM signature left unjudged."""
    return checked.dmarc.result == "fail" and not any(d.result in UNJUDGED for d in checked.dkim)


def _policy(dmarc: DmarcResult) -> str | None:
    """The policy honoured: with ``pct`` below 100 (a domain still trying its policy out) the
    next lower one for every message, as RFC 7489 section 6.6.4 says for the mail sampled out."""
    if dmarc.pct >= 100:
        return dmarc.policy
    return {"reject": "quarantine", "quarantine": "none"}.get(dmarc.policy or "", dmarc.policy)


def decide(checked: Checked, *, dmarcreject: bool) -> Verdict | None:
    """The refusal, or ``None`` to take the message."""
    if dmarcreject and _fails(checked) and _policy(checked.dmarc) == "reject":
        domain = _safe(checked.dmarc.domain)
        return Verdict(
            550,
            "5.7.1",
            f"message refused: the From domain {domain} publishes a DMARC policy of reject "
            "and this message fails DMARC, neither SPF nor DKIM pass for it (#5.7.1)",
        )
    return None


def our_claim(field: bytes, authserv_id: str) -> bool:
    """Whether a header field (name, colon, value; folded or not, maybe cut short) is one we
    remove: an ``Authentication-Results`` claiming ``authserv_id`` or an ``X-Qmesh-Quarantine``."""
    name, colon, value = field.partition(b":")
    if not colon:
        return False
    name = name.strip().lower()
    if name == b"x-qmesh-quarantine":
        return True
    if name != b"authentication-results":
        return False
    text = re.sub(rb"\r?\n", b"", value).decode("utf-8", "replace")
    return claims_our_id(text, authserv_id) or _first_token(text) == authserv_id.lower()


def _first_token(value: str) -> str:
    """The authserv-id after any leading comments (RFC 8601 section 2.2), lower case."""
    rest = value.lstrip()
    for _ in range(20):  # comments, nested up to a bound
        if not rest.startswith("("):
            break
        depth, end = 0, len(rest)
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                end = i + 1
                break
        rest = rest[end:].lstrip()
    token = re.split(r"[\s;(]", rest, maxsplit=1)[0]
    return token.strip('"').lower()


class ResultsFilter:
    """Feed a message's stored form with :meth:`feed` (pieces of any size), then :meth:`end`;
    what they return is the message without the fields :func:`our_claim` names."""

    def __init__(self, authserv_id: str) -> None:
        self._id = authserv_id
        self._in_header = True
        self._line_start = True
        self._held = bytearray()  # the current field, while it is not yet judged
        self._mode = "none"  # none (no field yet), held, keep, drop

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            if not self._in_header:
                out += data[i:]
                break
            if self._line_start:
                first = data[i]
                if first not in (0x20, 0x09) or self._mode == "none":
                    out += self._close()  # a new field (or the empty line) begins
                    if first == 0x0A or (first == 0x0D and data[i + 1 : i + 2] == b"\n"):
                        self._in_header = False  # the empty line: the rest is the body
                        continue
                    self._mode = "held"
                self._line_start = False
            end = data.find(b"\n", i)
            stop = n if end < 0 else end + 1
            self._take(data[i:stop], out)
            if end >= 0:
                self._line_start = True
            i = stop
        return bytes(out)

    def end(self) -> bytes:
        """The last field, if the message ended inside the header."""
        return self._close()

    def _take(self, piece: bytes, out: bytearray) -> None:
        if self._mode == "keep":
            out += piece
        elif self._mode == "held":
            self._held += piece
            if len(self._held) > DECIDE:
                self._judge()
                if self._mode == "keep":
                    out += self._held
                self._held.clear()

    def _judge(self) -> None:
        self._mode = "drop" if our_claim(bytes(self._held), self._id) else "keep"

    def _close(self) -> bytes:
        held = b""
        if self._mode == "held":
            self._judge()
            held = bytes(self._held) if self._mode == "keep" else b""
        self._held.clear()
        self._mode = "none"
        return held


async def without_our_claims(
    head: bytes, message: AsyncIterable[bytes], authserv_id: str
) -> AsyncIterator[bytes]:
    """``head`` (our own lines, kept), then ``message`` in stored form without the fields
    :func:`our_claim` names (RFC 8601 section 5): whoever the client, over SMTP or QMTP, a
    forged result claiming our authserv-id never reaches a mailbox."""
    yield head
    strip = ResultsFilter(authserv_id)
    async for chunk in message:
        kept = strip.feed(chunk)
        if kept:
            yield kept
    rest = strip.end()
    if rest:
        yield rest
