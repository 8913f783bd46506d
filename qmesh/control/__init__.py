"""qmail control files: the registry, the loader, reload, and a first directory.

``load_controls(dir, environ)`` at startup (it raises :class:`ControlError` on a bad control,
and the service refuses to start), :class:`ControlWatcher` for reload (CTL-07), the typed
:class:`Controls` everywhere else.
"""

from qmesh.control.initial import write_default_controls
from qmesh.control.loader import Inspection, inspect_controls, load_controls
from qmesh.control.parse import ControlError
from qmesh.control.registry import REGISTRY, SPECS, ControlSpec, MeOr
from qmesh.control.values import Controls, Source
from qmesh.control.watch import ControlWatcher

__all__ = [
    "REGISTRY",
    "SPECS",
    "ControlError",
    "ControlSpec",
    "ControlWatcher",
    "Controls",
    "Inspection",
    "MeOr",
    "Source",
    "inspect_controls",
    "load_controls",
    "write_default_controls",
]
