"""Report texts of local deliveries (LOCAL-18, LOCAL-32, LOCAL-40).

A report is what qmail-local printed: the output of the programs it ran, then either
``did <f>+<w>+<p>`` (and ``qp <qp>`` when it forwarded) or the text of the failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_REPORT_BYTES = 3000
TOO_LONG = "Error report too long, sorry."

ProgramResult = Literal["ok", "stop", "permanent", "temporary"]

PERMANENT_EXITS = frozenset({100, 64, 65, 70, 76, 77, 78, 112})
CHILD_CRASHED = "Aack, child crashed. (#4.3.0)"
PROGRAM_TIMEOUT = "Timeout on program delivery. (#4.3.0)"


@dataclass(frozen=True, slots=True)
class Counts:
    """Instructions carried out: file/maildir, forward, program (LOCAL-32)."""

    files: int = 0
    forwards: int = 0
    programs: int = 0


def success(counts: Counts, qp: int | None) -> str:
    """LOCAL-32: ``did <f>+<w>+<p>`` LF, then ``qp <qp>`` LF if something was forwarded."""
    text = f"did {counts.files}+{counts.forwards}+{counts.programs}\n"
    if qp is not None:
        text += f"qp {qp}\n"
    return text


def exit_class(status: int) -> ProgramResult:
    """LOCAL-18: 0 success; 99 success and stop; the sysexits list permanent; else temporary."""
    if status == 0:
        return "ok"
    if status == 99:
        return "stop"
    if status in PERMANENT_EXITS:
        return "permanent"
    return "temporary"


def program_failure(output: str, status: int | None, *, timed_out: bool = False) -> str:
    """The report of a failed program: its output, else a text naming what happened.

    ``status`` None means death by signal. **[MODERN]** A program that failed silently gets
    ``Delivery program exited with status <n>.`` (qmail left the report empty).
    """
    if timed_out:
        return output + PROGRAM_TIMEOUT
    if output.strip():
        return output
    if status is None:
        return CHILD_CRASHED
    return f"Delivery program exited with status {status}."


def truncate(text: str, limit: int = MAX_REPORT_BYTES) -> str:
    """LOCAL-40: a report over ``limit`` bytes is cut and ends with ``Error report too long``."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    keep = limit - len(TOO_LONG) - 1
    head = raw[:keep].decode("utf-8", "ignore")
    return head + "\n" + TOO_LONG
