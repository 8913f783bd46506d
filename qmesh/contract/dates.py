"""The date format of trace lines and bounces (SMTPD-58): ``5 Nov 2024 07:03:09 -0000``."""

from __future__ import annotations

import functools
import time

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def qmail_date(when: float) -> str:
    return _second(int(when))


@functools.lru_cache(maxsize=8)  # every message of a busy second has the same date
def _second(when: int) -> str:
    t = time.gmtime(when)
    return (
        f"{t.tm_mday} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} -0000"
    )
