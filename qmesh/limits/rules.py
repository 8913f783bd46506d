"""What the cluster-wide limits decide, as pure functions over the stored records (anvil).

Every record lives under one key of the ``qmesh_limits`` bucket and is changed by one
compare-and-set (:mod:`qmesh.limits.anvil`); here are the keys and the decisions, tested as
tables without NATS. Records carry their own times, so a changed control takes effect at once
and the bucket's ``max_age`` only collects what nobody touches any more.

- **Connections** (``conn.<service>.<ip|net>.<hex>``): the open connections of one client
  address (IPv4 address, IPv6 /64) or network (IPv4 /24, IPv6 /48) as ``{token: deadline}``;
  a connection that was never released (a crashed replica) drops out at its deadline.
- **Rates** (``rate.<hex>.<minute>``): messages and recipients of one client in one minute.
- **Failed logins** (``fail.client.<hex>``, ``fail.login.<sha256>``): a count and the time of
  the last failure; forgotten ``authblock`` seconds after the last one. Login names are kept
  only as hashes, passwords never.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from qmesh.address import client_address

BUCKET_MAX_AGE = 24 * 3600.0  # garbage collection only: each record says when it ends
WINDOW = 60.0  # the rate limits' minute
MAX_DELAY = 15.0  # the longest delay before a failed login's reply


@dataclass(frozen=True, slots=True)
class Limits:
    """The limit controls (``0`` turns one off)."""

    client_connections: int = 0  # ``clientconnections`` (off: each replica's maxconnip)
    net_connections: int = 0  # ``netconnections``
    client_messages: int = 0  # ``clientmessages``: per minute
    client_recipients: int = 0  # ``clientrecipients``: per minute
    auth_failures: int = 10  # ``authfailures``: per client, then blocked
    login_failures: int = 30  # ``loginfailures``: per login name
    auth_block: float = 900.0  # ``authblock``: seconds failures are remembered
    auth_delay: float = 1.0  # ``authdelay`` (milliseconds in the control)

    def failure_delay(self, failures: int) -> float:
        """The delay before the reply to a client's ``failures``-th failed login: it grows."""
        return min(self.auth_delay * max(1, failures), max(MAX_DELAY, self.auth_delay))


def _hex(address: ipaddress.IPv4Address | ipaddress.IPv6Address, bits: int) -> str:
    network = ipaddress.ip_network((address, bits), strict=False)
    prefix = int(network.network_address) >> (network.max_prefixlen - bits)
    return f"{network.version}x{prefix:0{(bits + 3) // 4}x}"


@lru_cache(maxsize=4096)  # a client connects again and again; a network parse costs 25 us
def client_keys(remote: str) -> tuple[str, str]:
    """The client's own key and its network's, as KV key tokens (``4x0a000001``).

    IPv4: the address and its /24; IPv6: the /64 (one host's share) and the /48. Anything
    that is not an IP address (a Unix socket) is one client of its own.
    """
    address = client_address(remote)
    if address is None:
        token = hashlib.sha256(remote.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return f"nx{token}", f"nx{token}"
    if address.version == 4:
        return _hex(address, 32), _hex(address, 24)
    return _hex(address, 64), _hex(address, 48)


def connection_key(service: str, scope: str, token: str) -> str:
    return f"conn.{service}.{scope}.{token}"


def rate_key(client: str, now: float) -> str:
    return f"rate.{client}.{int(now // WINDOW)}"


def client_failure_key(client: str) -> str:
    return f"fail.client.{client}"


def login_failure_key(login: str) -> str:
    """A login name as a key: hashed, so no name (valid or not) is stored or logged."""
    digest = hashlib.sha256(login.strip().lower().encode("utf-8", "surrogateescape"))
    return f"fail.login.{digest.hexdigest()[:32]}"


# --- records --------------------------------------------------------------------------------


def _load(raw: bytes | None) -> dict[str, object]:
    """A stored record; anything unreadable counts as empty (never a reason to refuse)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _dump(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of one rule over one record: allowed or not, and the record to write
    (``None``: leave the record as it is)."""

    allowed: bool
    record: bytes | None
    count: int = 0


def open_connection(
    raw: bytes | None, token: str, deadline: float, now: float, limit: int
) -> Change:
    """Add connection ``token`` unless ``limit`` connections are open already."""
    live = {k: _number(v) for k, v in _load(raw).items() if _number(v) > now}
    if limit and len(live) >= limit:
        return Change(False, None, len(live))
    live[token] = deadline
    return Change(True, _dump(live), len(live))


def close_connection(raw: bytes | None, token: str, now: float) -> Change:
    live = {k: _number(v) for k, v in _load(raw).items() if _number(v) > now and k != token}
    return Change(True, _dump(live), len(live))


def charge_rate(raw: bytes | None, messages: int, recipients: int, limits: Limits) -> Change:
    """Count ``messages`` messages and ``recipients`` recipients in this minute, unless either
    limit is reached; what is refused is not counted (it will be retried). Only what is counted
    is judged: SMTP counts each recipient at RCPT and the message at DATA."""
    record = _load(raw)
    sent, rcpts = int(_number(record.get("m"))), int(_number(record.get("r")))
    over_messages = messages and limits.client_messages and sent + messages > limits.client_messages
    over_recipients = (
        recipients and limits.client_recipients and rcpts + recipients > limits.client_recipients
    )
    if over_messages or over_recipients:
        return Change(False, None, sent)
    return Change(True, _dump({"m": sent + messages, "r": rcpts + recipients}), sent + messages)


def failures(raw: bytes | None, now: float, limits: Limits) -> int:
    """Failures still remembered: forgotten ``auth_block`` seconds after the last one."""
    record = _load(raw)
    if now - _number(record.get("t")) >= limits.auth_block:
        return 0
    return int(_number(record.get("n")))


def add_failure(raw: bytes | None, now: float, limits: Limits) -> Change:
    count = failures(raw, now, limits) + 1
    return Change(True, _dump({"n": count, "t": now}), count)


def login_blocked(client_failures: int, login_failures: int, limits: Limits) -> bool:
    """A client past ``authfailures`` is blocked; so is a client that has failed before and
    tries a login name past ``loginfailures``. A client with no failures may always try, so
    guessing at an account from elsewhere never locks its owner out."""
    if limits.auth_failures and client_failures >= limits.auth_failures:
        return True
    return (
        bool(limits.login_failures)
        and login_failures >= limits.login_failures > 0
        and (client_failures > 0)
    )
