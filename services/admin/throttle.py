"""Login throttling: a failure counter per client and per login name, with a growing delay.

Pure decisions here; :mod:`services.admin.sessions` keeps the counters in KV. After
``FREE_FAILURES`` failures in a row, each further attempt must wait ``BASE_DELAY`` seconds,
doubled for each failure since, up to ``MAX_DELAY``; a counter is forgotten ``FORGET`` seconds
after its last failure. The login name is counted as typed, whether or not such an account
exists, so the throttle tells nothing about accounts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

FREE_FAILURES = 3
BASE_DELAY = 2.0
MAX_DELAY = 300.0
FORGET = 900.0


class Failures(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = "qmesh.admin.failures.v1"
    count: int = 0
    last: float = 0.0


def current(failures: Failures | None, now: float) -> Failures:
    """The counter as it stands at ``now`` (forgotten after ``FORGET`` quiet seconds)."""
    if failures is None or now - failures.last > FORGET or failures.last > now + 60:
        return Failures()
    return failures


def wait_for(failures: Failures | None, now: float) -> float:
    """Seconds before another attempt may be checked; 0 when it may be now."""
    f = current(failures, now)
    if f.count < FREE_FAILURES:
        return 0.0
    delay = min(MAX_DELAY, BASE_DELAY * 2.0 ** (f.count - FREE_FAILURES))
    return max(0.0, f.last + delay - now)


def failed(failures: Failures | None, now: float) -> Failures:
    f = current(failures, now)
    return Failures(count=f.count + 1, last=now)
