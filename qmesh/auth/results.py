"""The Authentication-Results header field (RFC 8601), written with authres.

:func:`authentication_results` writes one field for SPF (MAIL FROM and HELO), each DKIM
signature, DMARC and ARC (RFC 8617) under this system's authserv-id; with ``fold`` each result
goes on a line of its own, so a field with ten DKIM reasons stays within RFC 5322's line
length. :func:`claims_our_id` tells which incoming fields claim that id,
so the receiving side can remove them before adding its own (RFC 8601 section 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import authres

from qmesh.auth.dkim import DkimResult
from qmesh.auth.dmarc import DmarcResult
from qmesh.auth.spf import SpfResult

Prop = authres.AuthenticationResultProperty


def authentication_results(
    authserv_id: str,
    *,
    spf: SpfResult | None = None,
    mail_from: str = "",
    helo: str = "",
    dkim: Sequence[DkimResult] = (),
    dmarc: DmarcResult | None = None,
    spf_helo: SpfResult | None = None,
    arc: str | None = None,
    fold: bool = False,
) -> str:
    """The whole field, ``Authentication-Results: ...``, without a line ending (folded lines
    end in LF and begin with a tab)."""
    results: list[authres.AuthenticationResult] = []
    if spf is not None:
        prop = Prop("smtp", "mailfrom", mail_from) if mail_from else Prop("smtp", "helo", helo)
        results.append(
            authres.AuthenticationResult(method="spf", result=spf.result, properties=[prop])
        )
    if spf_helo is not None:
        results.append(
            authres.AuthenticationResult(
                method="spf", result=spf_helo.result, properties=[Prop("smtp", "helo", helo)]
            )
        )
    for d in dkim:
        props = [Prop("header", "d", d.domain), Prop("header", "s", d.selector)] if d.domain else []
        if d.signature:
            props.append(Prop("header", "b", d.signature))
        results.append(
            authres.AuthenticationResult(
                method="dkim", result=d.result, properties=props, reason=d.reason or None
            )
        )
    if dmarc is not None:
        results.append(
            authres.AuthenticationResult(
                method="dmarc",
                result=dmarc.result,
                result_comment=f"p={dmarc.policy}" if dmarc.policy else None,
                properties=[Prop("header", "from", dmarc.domain)] if dmarc.domain else [],
            )
        )
    if arc is not None:
        results.append(authres.AuthenticationResult(method="arc", result=arc))
    if not results:
        results.append(authres.NoneAuthenticationResult())
    if fold:
        return f"Authentication-Results: {authserv_id};" + ";".join(
            f"\n\t{result}" for result in results
        )
    return str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results))


def claims_our_id(field_value: str, authserv_id: str) -> bool:
    """Whether an incoming Authentication-Results value claims ``authserv_id`` (to remove it);
    an unparsable one that starts with it counts as claiming it."""
    try:
        parsed = authres.AuthenticationResultsHeader.parse_value(field_value)
        claimed = str(parsed.authserv_id)
    except Exception:  # authres raises its own syntax errors; any of them: look at the start
        claimed = field_value.strip().split(";", 1)[0].split()[0] if field_value.strip() else ""
    return claimed.lower() == authserv_id.lower()
