"""DNS as the operator configures it: ``QMESH_DNS_SERVERS`` and the resolvers built from it.

Every service and command resolves through :func:`qmesh.dns.resolver.async_resolver` or
:func:`qmesh.dns.resolver.sync_resolver` (ARCHITECTURE section 7), so a deployment can point
at a local validating resolver and tests at a DNS server on loopback.
"""
