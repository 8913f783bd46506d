"""qmail's retry schedule (SEND-20, Appendix A) and the queue lifetime (SEND-24)."""

from __future__ import annotations

import math

from qmesh.contract.subjects import Channel

CHANSKIP: dict[Channel, int] = {"local": 10, "remote": 20}


def next_attempt(birth: float, start: float, channel: Channel) -> float:
    """The next attempt after a pass that starts at ``start`` (SEND-20, Appendix A).

    ``b + (floor(sqrt(t - b)) + c)^2`` for passes that start on time (``t - b`` a square of
    the step ``c``). A late pass lands on the next square of the step, as Appendix A says: a
    remote pass at 4 000 s still schedules 6 400 s, so lateness never compounds.
    """
    step = CHANSKIP[channel]
    root = math.isqrt(int(max(0.0, start - birth)))
    return birth + (step * (root // step + 1)) ** 2


def is_final_pass(birth: float, start: float, queuelifetime: int) -> bool:
    """A pass that starts after ``birth + queuelifetime`` is the last one (SEND-24)."""
    return start > birth + queuelifetime


LIFETIME_LINE = "I'm not going to try again; this message has been in the queue too long."
