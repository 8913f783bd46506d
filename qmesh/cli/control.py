"""``qmesh control check``: every control's effective value and source, and every error.

The exit status is 0 when every control could be read and parsed, 1 otherwise, so a CI job or
an init container can refuse a bad ConfigMap before any service does (CTL-06).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from qmesh.control.loader import inspect_controls
from qmesh.control.parse import ControlError
from qmesh.control.registry import ENV_OVERRIDES, SPECS
from qmesh.control.values import Controls
from qmesh.dkim.keyring import KeyringError, load_keyring

_ENV_OF = {name: var for var, name in ENV_OVERRIDES.items()}


def format_value(value: object) -> str:
    """One control value on one line: strings quoted, lists space-separated."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, frozenset):
        return format_value(tuple(sorted(value, key=str)))
    if isinstance(value, tuple):
        if not value:
            return "(empty)"
        if all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return " ".join(f"{k}:{v}" for k, v in value)
        return " ".join(str(item) for item in value)
    return str(value)


def _source(controls: Controls, name: str) -> str:
    source = controls.source(name)
    return f"env {_ENV_OF[name]}" if source == "env" else source


def _warnings(controls: Controls, unknown: tuple[str, ...]) -> list[str]:
    notes = [f"{name}: not a control file, ignored (a misspelt name?)" for name in unknown]
    if controls.me is None:
        notes.append("me is missing: smtpd answers 421 and host-name controls use literals")
    if controls.rcpthosts is None:
        notes.append("rcpthosts is missing: smtpd accepts only hosted domains (SMTPD-42)")
    if controls.canonical_local_domain() is None:
        notes.append("neither locals nor me: send cannot start (SEND-16)")
    for name in ("tlscert", "tlskey"):
        path = getattr(controls, name)
        if path is not None and not os.access(path, os.R_OK):
            notes.append(f"{name}: {path} is not readable here; smtpd and pop3d need it to start")
    return notes


def check_command(control_dir: Path, environ: Mapping[str, str]) -> int:
    """Print every control's value and source, warnings and errors; 0 if all are usable."""
    out = sys.stdout
    out.write(f"control directory {control_dir}\n")
    try:
        inspection = inspect_controls(control_dir, environ)
    except ControlError as err:
        out.write(f"error: {err}\n")
        return 1
    controls = inspection.controls
    failed = {err.control: err for err in inspection.errors}
    width = max(len(spec.name) for spec in SPECS)
    for spec in SPECS:
        if spec.name in failed:
            problem = failed[spec.name]
            at = f" (line {problem.line})" if problem.line is not None else ""
            line = f"ERROR{at}: {problem.reason}"
        else:
            value = format_value(getattr(controls, spec.name))
            line = f"{value}  [{_source(controls, spec.name)}]"
        out.write(f"{spec.name:<{width}}  {line}\n")
    for note in _warnings(controls, inspection.unknown):
        out.write(f"warning: {note}\n")
    errors = [str(problem) for problem in inspection.errors]
    try:  # DKIM keys: remote refuses to start on a bad one (issue 11)
        for keys in load_keyring(control_dir).values():
            out.write(f"domainkeys/{keys.domain}  signs with {', '.join(keys.active) or 'none'}\n")
    except KeyringError as err:
        errors.append(str(err))
    for text in errors:
        out.write(f"error: {text}\n")
    if errors:
        out.write(f"{len(errors)} error(s): services will refuse to start\n")
        return 1
    out.write("ok\n")
    return 0
