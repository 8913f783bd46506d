"""DKIM verification (RFC 6376 section 6, RFC 8463) on dkimpy: one result per signature.

Results as RFC 8601 names them: ``pass``; ``fail`` (the signature does not match the message);
``permerror`` (a malformed signature, no key or a revoked or unusable key, a header block too
large to look at); ``temperror`` (DNS did not answer); ``none`` (no signature). At most
:data:`MAX_SIGNATURES` are checked, so one message cannot make unbounded DNS queries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from qmesh.auth.lookup import DnsTemporary, TxtLookup
from qmesh.dkim.sign import header_block

MAX_SIGNATURES = 10
MAX_HEADER_BYTES = 1 << 20

_quiet = logging.getLogger("qmesh.auth.dkimpy")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True, slots=True)
class DkimResult:
    result: str
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    signature: str = ""  # the start of b=, for header.b (RFC 6008)
    reason: str = ""


def verify_dkim(message: bytes, lookup: TxtLookup) -> list[DkimResult]:
    """One result per DKIM-Signature of ``message`` (never raises)."""
    head = header_block(message)
    if len(head) >= MAX_HEADER_BYTES and b"\n\n" not in head and b"\r\n\r\n" not in head:
        return [DkimResult("permerror", reason="header block larger than 1 MB")]
    try:
        d = dkim.DKIM(message, logger=_quiet)
    except (dkim.DKIMException, ValueError, TypeError, IndexError) as err:
        return [DkimResult("permerror", reason=f"unparsable message: {err}"[:200])]
    signatures = [v for k, v in d.headers if k.lower() == b"dkim-signature"]
    if not signatures:
        return [DkimResult("none")]
    return [
        _one(d, index, value, lookup) for index, value in enumerate(signatures[:MAX_SIGNATURES])
    ]


def _one(d: dkim.DKIM, index: int, value: bytes, lookup: TxtLookup) -> DkimResult:
    """One signature, on the message parsed once by the caller."""
    try:
        tags = parse_tag_value(value)
    except (InvalidTagValueList, ValueError, IndexError) as err:
        return DkimResult("permerror", reason=f"malformed DKIM-Signature: {err}"[:200])
    text = {k.decode("ascii", "replace"): v.decode("ascii", "replace") for k, v in tags.items()}
    base = DkimResult(
        "permerror",
        text.get("d", ""),
        text.get("s", ""),
        text.get("a", ""),
        "".join(text.get("b", "").split())[:8],
    )
    temporary: list[str] = []

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            found = lookup(name.decode("ascii", "replace"))
        except DnsTemporary as err:
            temporary.append(str(err))
            raise dkim.DnsTimeoutError(str(err)) from err
        return found[0].encode() if found else None

    d.pk = None  # the key of an earlier signature must not count for this one
    try:
        ok = d.verify(idx=index, dnsfunc=dnsfunc)
    except dkim.ValidationError as err:
        reason = str(err)
        result = "fail" if "body hash mismatch" in reason else "permerror"
        return _with(base, result, reason)
    except (dkim.DKIMException, ValueError, TypeError, IndexError, KeyError) as err:
        return _with(base, "permerror", str(err) or type(err).__name__)
    if ok:
        return _with(base, "pass", "")
    if temporary:
        return _with(base, "temperror", f"DNS: {temporary[0]}")
    if getattr(d, "pk", None) is None:
        return _with(base, "permerror", "no usable key in DNS")
    return _with(base, "fail", "signature did not verify")


def _with(base: DkimResult, result: str, reason: str) -> DkimResult:
    return DkimResult(
        result, base.domain, base.selector, base.algorithm, base.signature, reason[:200]
    )
