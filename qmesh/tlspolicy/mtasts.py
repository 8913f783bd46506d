"""MTA-STS (RFC 8461): the ``_mta-sts`` TXT record, the policy file, and which MX it allows.

:func:`policy_id` reads the TXT record (section 3.1): exactly one record starting with
``v=STSv1``, with an ``id`` of 1 to 32 letters and digits; anything else is no policy.
:func:`parse_policy` reads the policy file (section 3.2): ``version: STSv1``, ``mode`` one of
``enforce``, ``testing``, ``none``, one or more ``mx`` patterns (a name, or ``*.`` and a name
for one more label, section 4.1), ``max_age`` up to 31557600 seconds. Unknown keys are ignored;
a missing or bad required field is :class:`PolicyError`, and the policy is not used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Mode = Literal["enforce", "testing", "none"]
MAX_AGE_LIMIT = 31557600
MAX_POLICY_BYTES = 64 * 1024  # section 3.3: "SHOULD NOT be larger than 64 KB"
ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
MX_PATTERN = re.compile(rf"^(?:\*\.)?{LABEL}(?:\.{LABEL})+$")


class PolicyError(ValueError):
    """A policy file that cannot be used; the text says why."""


@dataclass(frozen=True, slots=True)
class Policy:
    mode: Mode
    mx: tuple[str, ...]
    max_age: int

    def allows(self, host: str) -> bool:
        """Section 4.1: ``host`` matches one of the ``mx`` patterns."""
        name = host.lower().rstrip(".")
        for pattern in self.mx:
            if pattern.startswith("*."):
                head, _, rest = name.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


def policy_id(records: list[str]) -> str | None:
    """The ``id`` of the one ``v=STSv1`` TXT record; None when there is none or not one."""
    found = [r for r in records if r.startswith("v=STSv1")]
    if len(found) != 1:
        return None
    fields = {}
    for part in found[0].split(";"):
        key, eq, value = part.strip().partition("=")
        if eq:
            fields[key.strip()] = value.strip()
    if fields.get("v") != "STSv1":
        return None
    ident = fields.get("id", "")
    return ident if ID.match(ident) else None


def parse_policy(text: bytes) -> Policy:
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError("policy larger than 64 KB")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PolicyError("policy is not UTF-8") from err
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in decoded.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"not a key: value line: {line[:60]!r}")
        key, value = key.strip(), value.strip()
        if key == "mx":
            pattern = value.lower().rstrip(".")
            if not MX_PATTERN.match(pattern):
                raise PolicyError(f"bad mx pattern {value[:60]!r}")
            mx.append(pattern)
        elif key not in fields:
            fields[key] = value
    if fields.get("version") != "STSv1":
        raise PolicyError("version is not STSv1")
    mode = fields.get("mode")
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"bad mode {str(mode)[:20]!r}")
    age = fields.get("max_age", "")
    if not age.isdigit() or len(age) > 10:
        raise PolicyError("max_age is not a number")
    if mode != "none" and not mx:
        raise PolicyError("no mx")
    return Policy(mode, tuple(mx), min(int(age), MAX_AGE_LIMIT))  # type: ignore[arg-type]
