"""One package per qmail process. Services import ``qmesh`` and never each other."""
