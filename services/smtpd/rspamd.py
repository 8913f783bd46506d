"""The content filter client: Rspamd's ``/checkv2`` at the end of DATA (defences #12).

The message (with smtpd's ``Received:`` line) is streamed to Rspamd with the envelope in
request headers (``IP``, ``Helo``, ``From``, ``Rcpt``, ``User``, ``Queue-Id`` is not known
yet); the JSON answer is judged by :func:`services.smtpd.content.judge`. Rspamd that cannot
be reached, answers late or answers nonsense gives ``None``: the session then accepts and
logs ``smtpd.rspamd_unavailable`` (or answers ``451`` with ``rspamdtempfail``). Counted in
``qmesh_smtpd_rspamd_total{action}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx

from services.smtpd import metrics
from services.smtpd.content import Scan, judge

log = logging.getLogger(__name__)

TIMEOUT = 30.0  # Rspamd's own task timeout is 8 s; a large message needs time to upload


class RspamdScanner:
    def __init__(self, *, timeout: float = TIMEOUT) -> None:
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # made inside the running loop, on first use
            self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        return self._client

    async def scan(
        self,
        url: str,
        message: AsyncIterator[bytes],
        size: int,
        *,
        ip: str,
        helo: str | None,
        sender: str,
        recipients: list[str],
        user: str | None,
    ) -> Scan | None:
        headers = [("Content-Length", str(size)), ("IP", ip), ("From", _header(sender))]
        headers += [("Rcpt", _header(r)) for r in recipients]
        if helo:
            headers.append(("Helo", _header(helo)))
        if user:
            headers.append(("User", _header(user)))
        try:
            response = await self._http().post(
                url.rstrip("/") + "/checkv2", content=message, headers=headers
            )
            response.raise_for_status()
            answer = json.loads(response.content)
            if not isinstance(answer, dict):
                raise ValueError("not a JSON object")
        except (httpx.HTTPError, ValueError) as err:
            metrics.RSPAMD.labels("unavailable").inc()
            log.warning(
                "smtpd.rspamd_unavailable", extra={"remote": ip, "reason": type(err).__name__}
            )
            return None
        scan = judge(answer)
        metrics.RSPAMD.labels(scan.action).inc()
        log.info(
            "smtpd.rspamd",
            extra={"remote": ip, "action": scan.action, "score": round(scan.score, 2)},
        )
        return scan

    async def start(self) -> None:
        """A service component: the HTTP client is made on first use."""

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _header(value: str) -> str:
    """An envelope value as an HTTP header value: no control characters, bounded."""
    return "".join(c if " " <= c <= "~" else "?" for c in value)[:1000]
