"""Mailing lists (ezmlm for the cluster): names, records and state shared by the CLI, the
local hand-over hook and the ``lists`` service (issue #15)."""
