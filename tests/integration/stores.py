"""The store under test, on both adapters: the directory store and a real S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmesh.store.base import BlobStore
from qmesh.store.files import FileStore
from qmesh.store.s3 import SINGLE_PUT_MAX, S3Store, s3_client
from tests.servers import S3Server


async def open_test_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    bucket: str,
    single_put_max: int = SINGLE_PUT_MAX,
) -> BlobStore:
    if request.param == "files":
        return FileStore(tmp_path / "store", bucket)
    s3: S3Server = request.getfixturevalue("s3_server")
    client = s3_client(s3.endpoint, s3.access_key, s3.secret_key)
    blobs = S3Store(client, bucket, single_put_max=single_put_max)
    await blobs.ensure_bucket()
    return blobs
