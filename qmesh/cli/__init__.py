"""The ``qmesh`` command: up, run, domain, user, rule, control."""
