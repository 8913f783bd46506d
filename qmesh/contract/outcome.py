"""The one outcome vocabulary (STYLE section 5): qmail's K/Z/D, SMTP 2xx/4xx/5xx."""

from __future__ import annotations

import logging
from typing import Literal

Outcome = Literal["delivered", "deferred", "failed"]

MAX_REPORT_BYTES = 10_000  # SEND-33


def outcome_letter(outcome: Outcome) -> str:
    return {"delivered": "K", "deferred": "Z", "failed": "D"}[outcome]


def result_log_level(outcome: Outcome) -> int:
    """The level of a channel's ``delivery.result``: a success is send's ``delivery_success``
    at INFO (SEND-40), so local and remote repeat only deferrals and failures there."""
    return logging.DEBUG if outcome == "delivered" else logging.INFO


def clip_report(text: str, limit: int = MAX_REPORT_BYTES) -> str:
    """Keep at most ``limit`` bytes of a report (SEND-33), cutting on a character boundary."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")
