"""The controls local reads, taken from the loaded control files in one place (spec 2.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qmesh.control.values import Controls
from services.local.program import Limits


@dataclass(frozen=True, slots=True)
class LocalConfig:
    defaultdelivery: str = "./Maildir/\n"  # LOCAL-26
    programdelivery: bool = False  # LOCAL-18
    concurrency: int = 10  # concurrencylocal, capped by spawnlimit (SEND-26)
    limits: Limits = field(default_factory=Limits)
    scratch: Path | None = None  # where program scratch directories are made


def local_config(c: Controls, *, scratch: Path | None = None) -> LocalConfig:
    return LocalConfig(
        defaultdelivery=c.defaultdelivery,
        programdelivery=c.programdelivery,
        concurrency=max(1, min(c.concurrencylocal, c.spawnlimit)),
        scratch=scratch,
    )
