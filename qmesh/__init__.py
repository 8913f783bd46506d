"""qmesh: qmail rebuilt as a cluster. The shared library: contract, ports, runtime and CLI."""

__version__ = "0.1.0"
