"""The controls send reads, taken from the loaded control files in one place."""

from __future__ import annotations

from dataclasses import dataclass

from qmesh.control.values import Controls
from qmesh.routing.classify import RoutingRules
from services.send.bounce import BounceControls


@dataclass(frozen=True, slots=True)
class SendConfig:
    rules: RoutingRules
    bounce: BounceControls
    queuelifetime: int
    concurrencylocal: int
    concurrencyremote: int


def send_config(c: Controls) -> SendConfig:
    me = c.me or ""
    return SendConfig(
        rules=RoutingRules.from_controls(c),
        bounce=BounceControls(
            bouncefrom=c.bouncefrom,
            bouncehost=c.bouncehost or me,
            doublebounceto=c.doublebounceto,
            doublebouncehost=c.doublebouncehost or me,
            bounceformat=c.bounceformat,
            bouncemaxbytes=c.bouncemaxbytes,
        ),
        queuelifetime=c.queuelifetime,
        concurrencylocal=min(c.concurrencylocal, c.spawnlimit),
        concurrencyremote=min(c.concurrencyremote, c.spawnlimit),
    )
