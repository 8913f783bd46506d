"""The operator reference of the controls, rendered from the registry into ``docs/controls.md``.

The document keeps its prose; the tables between the ``BEGIN``/``END`` markers are generated.
A unit test fails when they differ from :func:`render_tables`; to refresh them run
``python -m qmesh.control.reference docs/controls.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from qmesh.control.registry import ENV_OVERRIDES, SPECS, ControlSpec, describe_default

BEGIN = "<!-- BEGIN GENERATED FROM qmesh/control/registry.py -->"
END = "<!-- END GENERATED -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(spec: ControlSpec) -> str:
    name = f"`{spec.name}`" + (" [EXT]" if spec.ext else "")
    cells = (name, spec.kind, describe_default(spec.default), ", ".join(spec.used_by))
    return "| " + " | ".join(_cell(c) for c in (*cells, spec.description)) + " |"


def render_tables() -> str:
    """The generated part of ``docs/controls.md``: every control, then the env overrides."""
    lines = [
        "| control | kind | default | used by | meaning |",
        "|---|---|---|---|---|",
        *(_row(spec) for spec in SPECS),
        "",
        "| environment variable | overrides |",
        "|---|---|",
        *(f"| `{var}` | `{name}` |" for var, name in ENV_OVERRIDES.items()),
    ]
    return "\n".join(lines) + "\n"


def generated_part(document: str) -> str:
    """The text between the markers of ``document`` (empty if they are missing)."""
    _, begin, rest = document.partition(BEGIN + "\n")
    body, end, _ = rest.partition(END)
    return body if begin and end else ""


def update_document(path: Path) -> bool:
    """Rewrite the generated part of ``path``; ``True`` if it changed."""
    document = path.read_text(encoding="utf-8")
    old = generated_part(document)
    if not old and BEGIN not in document:
        raise ValueError(f"{path} has no {BEGIN} marker")
    new = render_tables()
    if old == new:
        return False
    head, _, rest = document.partition(BEGIN + "\n")
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{new}{END}{tail}", encoding="utf-8")
    return True


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        if update_document(Path(arg)):
            sys.stdout.write(f"updated {arg}\n")
