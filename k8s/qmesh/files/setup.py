"""Helm hook: make the NATS streams, consumers and buckets, then create each domain in the
directory unless it exists (LOCAL-56).

Services never make streams, consumers or buckets (hardening #3): `qmesh provision` does, with
the consumers' max_ack_pending read from the mounted controls (concurrencylocal,
concurrencyremote), so every install and upgrade applies a changed limit.

Usage: python setup.py POSTMASTER DOMAIN...; uses the `qmesh` CLI with the admin NATS user.
"""

# ruff: noqa: T201 - a command-line script: printing is its output

import subprocess
import sys

postmaster, domains = sys.argv[1], sys.argv[2:]
subprocess.run(["qmesh", "provision"], check=True)
listing = subprocess.run(
    ["qmesh", "domain", "list"], check=True, capture_output=True, text=True
).stdout
existing = {line.split()[0].lower() for line in listing.splitlines() if line.strip()}
for domain in domains:
    if domain.lower() in existing:
        print(f"domain {domain} exists")
        continue
    subprocess.run(["qmesh", "domain", "add", domain, "--postmaster", postmaster], check=True)
    print(f"domain {domain} added")
