"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmesh.store.base import BlobStore
from tests.integration.stores import open_test_store


@pytest.fixture(params=["files", "s3"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> BlobStore:
    """A queue bucket of this test's own, on each adapter."""
    return await open_test_store(request, tmp_path, f"queue-{unique}")
