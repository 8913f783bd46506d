"""``qmesh dns DOMAIN [--check]``: the records to publish, and how DNS's answers differ.

Prints each record as a zone-file line (and the MTA-STS policy file to serve). With
``--check`` it asks the resolvers of ``QMESH_DNS_SERVERS`` for each and names every
difference; the exit status is 0 when there is none, 1 otherwise, 111 when DNS cannot answer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

import dns.exception
import dns.resolver

from qmesh.control import ControlError, load_controls
from qmesh.directory.errors import InvalidName
from qmesh.directory.names import domain_name
from qmesh.dkim.keyring import KeyringError, load_keyring
from qmesh.dns.records import Record, differences, expected, mta_sts_policy
from qmesh.dns.resolver import sync_resolver

LOOKUP_LIFETIME = 10.0


class DnsUnavailable(Exception):
    """DNS did not answer (timeout, SERVFAIL): nothing can be said about the record."""


def add_dns_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dns", help="the DNS records to publish for a domain (MX, SPF, DKIM ...)")
    p.add_argument("domain")
    p.add_argument("--check", action="store_true", help="compare with what DNS answers")


def zone_text(domain: str, me: str, records: list[Record]) -> str:
    """What ``qmesh dns DOMAIN`` prints (and the admin page shows): zone lines, then the
    MTA-STS policy file as comments."""
    lines = [f"{r.zone_line()}{f'  ; {r.note}' if r.note else ''}" for r in records]
    lines += ["", f"; https://mta-sts.{domain}/.well-known/mta-sts.txt (text/plain):"]
    lines += [f";   {line}" for line in mta_sts_policy(me).splitlines()]
    return "\n".join(lines) + "\n"


def run_dns(args: argparse.Namespace, control: Path, environ: Mapping[str, str]) -> int:
    out, err = sys.stdout, sys.stderr
    try:
        domain = domain_name(args.domain)
        controls = load_controls(control, environ)
        keys = load_keyring(control).get(domain)
    except (InvalidName, ControlError, KeyringError) as e:
        err.write(f"qmesh dns: {e}\n")
        return 1
    me = controls.me or domain
    records = expected(domain, me, keys)
    if not args.check:
        out.write(zone_text(domain, me, records))
        return 0
    try:
        resolver = sync_resolver(environ.get("QMESH_DNS_SERVERS", ""), lifetime=LOOKUP_LIFETIME)
    except ValueError as e:
        err.write(f"qmesh dns: {e}\n")
        return 1
    problems = 0
    unavailable = 0
    for r in records:
        try:
            found = differences(r, _answers(resolver, r))
        except DnsUnavailable as e:
            out.write(f"?  {r.kind}: {r.name}: DNS did not answer ({e})\n")
            unavailable += 1
            continue
        if found:
            problems += len(found)
            for text in found:
                out.write(f"✗  {text}\n")
            out.write(f"   publish: {r.zone_line()}\n")
        else:
            out.write(f"ok {r.kind}: {r.name}\n")
    if problems:
        out.write(f"{problems} difference(s)\n")
        return 1
    return 111 if unavailable else 0


def _answers(resolver: dns.resolver.Resolver, record: Record) -> list[str]:
    try:
        answer = resolver.resolve(f"{record.name}.", record.rtype, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.Timeout as e:
        raise DnsUnavailable("timeout") from e
    except dns.exception.DNSException as e:
        raise DnsUnavailable(type(e).__name__) from e
    if record.rtype == "MX":
        return [rd.to_text() for rd in answer]
    return [b"".join(rd.strings).decode("utf-8", "replace") for rd in answer]
