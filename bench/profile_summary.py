"""Where a process's CPU goes, from ``py-spy record --format raw`` (collapsed stacks: frames
root-first joined by ``;``, then a space and a sample count). With ``--subprocesses`` the
first frames name the process and its parents (``process 123:"python -m services.send"``).

Samples are of threads that were not idle, so a thread blocked in ``fsync`` counts: read the
shares against the CPU that ``/proc`` measured, not the sampled milliseconds as CPU."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

PROCESS = re.compile(r'^process \d+:"(?P<cmd>.*)"$')
LINE = re.compile(r"^(?P<name>.*) \((?P<file>[^():]*)(?::\d+)?\)$")
TOP = 12


@dataclass
class Profile:
    samples: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)  # frame -> samples under it
    leaf: Counter[str] = field(default_factory=Counter)  # frame -> samples on CPU in it


def frame_name(frame: str) -> str:
    """``put (qmesh/store/files.py:88)`` -> ``put (qmesh/store/files.py)``: one per function."""
    m = LINE.match(frame)
    return f"{m['name']} ({m['file']})" if m else frame


def process_name(frame: str) -> str | None:
    """``process 12:"python -m services.send"`` -> ``send``; None for an ordinary frame."""
    m = PROCESS.match(frame)
    if not m:
        return None
    words = m["cmd"].split()
    for word in words:
        if word.startswith("services."):
            return word.removeprefix("services.")
    return " ".join(words[:3])


def parse(raw: str) -> dict[str, Profile]:
    """Profiles per process (one named ``-`` when the stacks do not say)."""
    profiles: dict[str, Profile] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        name = "-"
        while frames and (named := process_name(frames[0])) is not None:
            name, frames = named, frames[1:]  # the innermost process
        profile = profiles.setdefault(name, Profile())
        n = int(count)
        profile.samples += n
        for frame in dict.fromkeys(frame_name(f) for f in frames):
            profile.inclusive[frame] += n
        if frames:
            profile.leaf[frame_name(frames[-1])] += n
    return profiles


OURS = ("qmesh/", "services/")


def summarise(raw: str, messages: int, rate: int, ours: tuple[str, ...] = OURS) -> str:
    """Per process: sampled ms per message, then the share of its samples under the busiest
    functions of our own code (everything they call included) and in each leaf function."""
    ms = 1000.0 / rate / messages
    out = []
    for name, profile in sorted(parse(raw).items(), key=lambda p: -p[1].samples):
        total = profile.samples
        out.append(f"\n{name}: {total * ms:.2f} ms/msg sampled ({total} samples)\n")
        mine = [(f, n) for f, n in profile.inclusive.most_common() if any(o in f for o in ours)]
        out.append("  our code, inclusive:\n")
        out.extend(f"    {100 * n / total:5.1f}%  {f}\n" for f, n in mine[:TOP])
        out.append("  leaf functions (self):\n")
        out.extend(f"    {100 * n / total:5.1f}%  {f}\n" for f, n in profile.leaf.most_common(TOP))
    return "".join(out)
