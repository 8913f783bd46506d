"""Reports (LOCAL-18, LOCAL-32, LOCAL-40) and quotas (LOCAL-33)."""

from __future__ import annotations

import pytest

from services.local.maildir import over_quota
from services.local.report import (
    CHILD_CRASHED,
    MAX_REPORT_BYTES,
    TOO_LONG,
    Counts,
    ProgramResult,
    exit_class,
    program_failure,
    success,
    truncate,
)


def test_success_report() -> None:
    """LOCAL-32: did <f>+<w>+<p>, then qp when something was forwarded."""
    assert success(Counts(1, 0, 0), None) == "did 1+0+0\n"
    assert success(Counts(0, 2, 1), 12345) == "did 0+2+1\nqp 12345\n"


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (0, "ok"),
        (99, "stop"),
        *((code, "permanent") for code in (100, 64, 65, 70, 76, 77, 78, 112)),
        *((code, "temporary") for code in (1, 2, 111, 101, 126, 127, 255)),
    ],
)
def test_exit_codes(status: int, result: ProgramResult) -> None:
    """LOCAL-18: 0 success; 99 stop; sysexits list permanent; anything else temporary."""
    assert exit_class(status) == result


def test_program_failure_texts() -> None:
    """LOCAL-18 [MODERN]: a silent failure names its status; output is the report otherwise."""
    assert program_failure("no such list\n", 100) == "no such list\n"
    assert program_failure("", 100) == "Delivery program exited with status 100."
    assert program_failure(" \n", 111) == "Delivery program exited with status 111."
    assert program_failure("", None) == CHILD_CRASHED
    assert program_failure("half\n", None, timed_out=True).startswith("half\nTimeout")


def test_truncation() -> None:
    """LOCAL-40: longer than 3000 bytes → cut, ending with 'Error report too long, sorry.'"""
    short = "x" * MAX_REPORT_BYTES
    assert truncate(short) == short
    cut = truncate("é" * 5000)
    assert cut.endswith(TOO_LONG)
    assert len(cut.encode()) <= MAX_REPORT_BYTES
    assert cut.startswith("é" * 100)


@pytest.mark.parametrize(
    ("quota", "sizes", "size", "over"),
    [
        (None, {"a": 10**12}, 1, False),
        (100, {}, 100, False),
        (100, {}, 101, True),
        (100, {"a": 60, "b": 30}, 10, False),
        (100, {"a": 60, "b": 30}, 11, True),
        # a repeated delivery replaces its own object: it is not counted twice
        (100, {"k": 60, "b": 30}, 60, False),
    ],
)
def test_quota(quota: int | None, sizes: dict[str, int], size: int, over: bool) -> None:
    """LOCAL-33: used + the object about to be written must not exceed the quota."""
    assert over_quota(quota, sizes, "k", size) is over
