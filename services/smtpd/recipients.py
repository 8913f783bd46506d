"""Whether one recipient is taken, for SMTP RCPT and QMTP alike (SMTPD-41..45, QMTP-13)."""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Protocol

from qmesh.contract.errors import Temporary
from qmesh.contract.events import Verdict as RcptVerdict
from qmesh.routing.classify import Local, classify
from services.smtpd import replies
from services.smtpd.config import SmtpdConfig
from services.smtpd.policy import check_rcpt, localiphost
from services.smtpd.verdict import Verdict


class RecipientCheck(Protocol):
    async def verify(self, recipient: str, namespace: str) -> RcptVerdict: ...


async def judge_recipient(
    address: str,
    *,
    config: SmtpdConfig,
    relayclient: str | None,
    domains: Callable[[], Container[str]],
    rcptcheck: RecipientCheck,
) -> tuple[str | None, Verdict]:
    """SMTPD-48 steps 7 to 9 (SMTPD-41..45): the address to queue, or ``None``, and the verdict."""
    address = localiphost(address, config.ipme, config.localiphost)
    try:
        names = domains()
    except Temporary:
        return None, replies.LOOKUP_FAILED
    taken = check_rcpt(
        address, policy=config.relay, relayclient=relayclient, directory_domains=names
    )
    if isinstance(taken, Verdict):
        return None, taken
    if config.rcptcheck:
        route = classify(taken, config.relay.rules, names)
        if isinstance(route, Local):  # SMTPD-45: local recipients are verified, remote ones not
            answer = await rcptcheck.verify(route.address, route.namespace)
            if answer == "invalid":
                return None, replies.NO_MAILBOX
            if answer == "tempfail":
                return None, replies.LOOKUP_FAILED
    return taken, replies.RCPT_OK
