"""Outbound transport security: MTA-STS policies (RFC 8461) and DANE TLSA records (RFC 7672).

Pure parsing and matching; remote fetches, caches and applies them
(:mod:`services.remote.tlspolicy`).
"""
