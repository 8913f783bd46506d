"""DKIM signing keys and signatures (RFC 6376, RFC 8463), on dkimpy.

Keys are files at ``domainkeys/<domain>/<selector>`` in the control directory (the layout of
qmail's DKIM patch); ``domainkeys/<domain>/selector`` names the active selectors
(:mod:`qmesh.dkim.keyring`).
"""
