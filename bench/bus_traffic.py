"""What a run costs the bus, read from nats-server's monitoring endpoint (``/connz``, ``/jsz``).

``qmesh up`` starts its NATS with monitoring on a loopback port and prints it. Every service
connects as its own NATS user, so ``/connz?auth=1`` tells the messages and bytes each one sent
(``in``: published, requests and acks included) and received (``out``: deliveries, replies).
``/jsz?streams=1`` gives each stream's last sequence: the difference over a run is the number of
JetStream writes (KV puts and deletes included), each one fsynced before its ack under
``sync_interval: always``.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MONITOR_RE = re.compile(r"monitoring (http://[^\s)]+)")


def monitor_url(output: Path) -> str | None:
    """The last monitoring address ``qmesh up`` printed (NATS may have been restarted)."""
    found = MONITOR_RE.findall(output.read_text(errors="replace")) if output.exists() else []
    return found[-1] if found else None


def _get(monitor: str, path: str) -> Any:
    with urllib.request.urlopen(monitor + path, timeout=10) as answer:
        return json.load(answer)


def counters(connz: Mapping[str, Any], jsz: Mapping[str, Any]) -> dict[str, int]:
    """Flat counters: ``<user> in msgs``, ``<user> out bytes``..., ``writes <stream>``."""
    result: dict[str, int] = {}
    for conn in connz.get("connections", []):
        user = conn.get("authorized_user") or conn.get("name") or "?"
        for key in ("in_msgs", "out_msgs", "in_bytes", "out_bytes"):
            name = f"{user} {key.replace('_', ' ')}"
            result[name] = result.get(name, 0) + int(conn.get(key, 0))
    for account in jsz.get("account_details", []):
        for stream in account.get("stream_detail", []):
            result[f"writes {stream['name']}"] = int(stream["state"]["last_seq"])
    return result


def snapshot(monitor: str) -> dict[str, int]:
    return counters(_get(monitor, "/connz?auth=1&limit=4096"), _get(monitor, "/jsz?streams=1"))


def per_message(
    before: Mapping[str, int], after: Mapping[str, int], messages: int
) -> dict[str, float]:
    """What changed, divided by ``messages``; a counter that fell (a reconnect) is left out."""
    return {
        name: (after[name] - before.get(name, 0)) / messages
        for name in after
        if after[name] >= before.get(name, 0) and after[name] != before.get(name, 0)
    }
