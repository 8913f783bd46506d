"""The store under test, on both adapters: the directory store and a real S3 server."""

from __future__ import annotations

import json
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


def write_previous_layout(
    store: FileStore, key: str, body: bytes, metadata: dict[str, str] | None = None
) -> None:
    """Store ``key`` as the release before one-file objects did: the body as the whole file,
    metadata as JSON in ``.meta-<bucket>/<key>@<inode>``."""
    path = store.root.joinpath(store.bucket, *key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    if metadata:
        *parents, name = key.split("/")
        sidecar = store.root.joinpath(f".meta-{store.bucket}", *parents)
        sidecar.mkdir(parents=True, exist_ok=True)
        sidecar.joinpath(f"{name}@{path.stat().st_ino}").write_text(
            json.dumps(metadata, sort_keys=True), encoding="ascii"
        )
