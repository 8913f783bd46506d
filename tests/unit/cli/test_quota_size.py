"""``qmesh user quota ADDRESS SIZE``: bytes, vsetuserquota's suffixes, or none (LOCAL-33)."""

from __future__ import annotations

import pytest

from qmesh.cli.admin import parse_quota
from qmesh.directory.errors import DirectoryError


@pytest.mark.parametrize(
    ("text", "quota"),
    [
        ("1000", 1000),
        ("50M", 50 * 1024**2),
        ("512k", 512 * 1024),
        ("2G", 2 * 1024**3),
        ("none", None),
        ("NOQUOTA", None),
    ],
)
def test_sizes(text: str, quota: int | None) -> None:
    assert parse_quota(text) == quota


@pytest.mark.parametrize("text", ["", "M", "-5", "5MB", "1.5G", "²", "9" * 21, "5 M", "0x10"])
def test_refused(text: str) -> None:
    with pytest.raises(DirectoryError):
        parse_quota(text)
