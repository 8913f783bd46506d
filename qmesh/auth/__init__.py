"""Checking incoming mail: SPF (RFC 7208), DKIM (RFC 6376, RFC 8463), DMARC (RFC 7489) and the
Authentication-Results header (RFC 8601), on pyspf, dkimpy, publicsuffix2 and authres.

A library: each check takes what it needs (addresses, the message, a DNS lookup built from
``QMESH_DNS_SERVERS``) and returns a result word, never raises for bad input or DNS trouble.
A DNS failure is ``temperror``, never a failure of the message.
"""
