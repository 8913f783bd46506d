"""The DNS records a mail domain publishes for qmesh, and how DNS's answers differ from them.

Pure. :func:`expected` lists, for one domain: its MX (this system's ``me``), SPF (RFC 7208:
the domain's MX hosts may send, nothing else), a DKIM key record per selector in
``domainkeys/<domain>/`` (RFC 6376 3.6.1; inactive selectors too, so signatures made with an
old key still verify after a rotation), DMARC (RFC 7489: start with ``p=none`` and reports to
the postmaster), MTA-STS (RFC 8461: the TXT record and the policy file to serve over HTTPS) and
TLS-RPT (RFC 8460). :func:`differences` compares one of them with the TXT or MX answer and names
what is missing or different; SPF, DMARC and TLS-RPT are the operator's choices, so only their
presence and syntax are checked, while MX and DKIM keys must be exactly these.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from qmesh.dkim.keyring import DomainKeys
from qmesh.tlspolicy.mtasts import policy_id

Kind = Literal["MX", "SPF", "DKIM", "DMARC", "MTA-STS", "TLS-RPT"]


@dataclass(frozen=True, slots=True)
class Record:
    kind: Kind
    name: str  # without the final dot
    rtype: Literal["MX", "TXT"]
    value: str  # MX: "10 host."; TXT: the text, unsplit
    note: str = ""

    def zone_line(self) -> str:
        if self.rtype == "MX":
            return f"{self.name}. IN MX {self.value}"
        parts = [self.value[i : i + 255] for i in range(0, len(self.value), 255)] or [""]
        strings = " ".join(f'"{p}"' for p in parts)
        return (
            f"{self.name}. IN TXT ( {strings} )"
            if len(parts) > 1
            else f"{self.name}. IN TXT {strings}"
        )


def expected(
    domain: str, me: str, keys: DomainKeys | None, today: datetime.date | None = None
) -> list[Record]:
    day = (today or datetime.date.today()).strftime("%Y%m%d")
    found = [
        Record("MX", domain, "MX", f"10 {me}."),
        Record("SPF", domain, "TXT", "v=spf1 mx -all", "the MX hosts send this domain's mail"),
    ]
    if keys is not None:
        for selector, key in sorted(keys.keys.items()):
            note = "signs now" if selector in keys.active else "not signing; keep while in use"
            found.append(
                Record("DKIM", f"{selector}._domainkey.{domain}", "TXT", key.record(), note)
            )
    found += [
        Record(
            "DMARC",
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}",
            "raise p= to quarantine, then reject, once the reports look right",
        ),
        Record(
            "MTA-STS",
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={day}",
            f"and serve https://mta-sts.{domain}/.well-known/mta-sts.txt",
        ),
        Record(
            "TLS-RPT", f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"
        ),
    ]
    return found


def mta_sts_policy(me: str, mode: str = "testing", max_age: int = 604800) -> str:
    """The policy file to serve at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``."""
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {me}\r\nmax_age: {max_age}\r\n"


def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, eq, value = part.partition("=")
        if eq:
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def differences(record: Record, answers: Sequence[str]) -> list[str]:
    """What is wrong with ``answers`` (TXT texts or ``"pref host."`` MX texts) for ``record``."""
    where = f"{record.kind}: {record.name}"
    if record.kind == "MX":
        hosts = {a.split()[-1].lower().rstrip(".") for a in answers if a.split()}
        want = record.value.split()[-1].rstrip(".")
        if not answers:
            return [f"{where} has no MX record (mail goes to its address, if any)"]
        if want not in hosts:
            return [f"{where}: {want} is not among its exchangers ({', '.join(sorted(hosts))})"]
        return []
    prefix = {
        "SPF": "v=spf1",
        "DKIM": "",
        "DMARC": "v=DMARC1",
        "MTA-STS": "v=STSv1",
        "TLS-RPT": "v=TLSRPTv1",
    }[record.kind]
    if record.kind == "DKIM":
        return _dkim(where, record, answers)
    mine = [a for a in answers if a.lower().startswith(prefix.lower())]
    if not mine:
        return [f"{where} has no {prefix} record"]
    if len(mine) > 1:
        return [f"{where} has {len(mine)} {prefix} records; receivers treat that as an error"]
    text = mine[0]
    if record.kind == "SPF":
        if text.split() != record.value.split():
            return [f"{where} publishes {text!r}; suggested {record.value!r}"]
    elif record.kind == "DMARC":
        tags = _tags(text)
        if tags.get("v") != "DMARC1" or tags.get("p") not in ("none", "quarantine", "reject"):
            return [f"{where}: {text!r} has no valid v=DMARC1 and p= (RFC 7489 6.3)"]
    elif record.kind == "MTA-STS":
        if policy_id([text]) is None:
            return [f"{where}: {text!r} has no valid id (RFC 8461 3.1)"]
    elif record.kind == "TLS-RPT" and "rua" not in _tags(text):
        return [f"{where}: {text!r} has no rua= (RFC 8460 3)"]
    return []


def _dkim(where: str, record: Record, answers: Sequence[str]) -> list[str]:
    if not answers:
        return [f"{where} has no key record; its signatures cannot be verified"]
    want = _tags(record.value)
    for text in answers:
        tags = _tags(text)
        if tags.get("p") == want["p"] and tags.get("k", "rsa") == want["k"]:
            return []
    if len(answers) > 1:
        return [f"{where} has {len(answers)} TXT records and none holds this key"]
    found = _tags(answers[0])
    if not found.get("p"):
        return [f"{where}: the published record has no key (p= empty: revoked)"]
    return [f"{where} publishes another key (k={found.get('k', 'rsa')}); this one differs"]
