"""Which store a service gets: ``QMESH_STORE=s3`` or ``file:///path`` (ARCHITECTURE 3, 6)."""

from __future__ import annotations

from qmesh.runtime.settings import Settings
from qmesh.store.base import BlobStore
from qmesh.store.files import FileStore
from qmesh.store.s3 import S3Store, s3_client


def open_store(settings: Settings, bucket: str) -> BlobStore:
    """The store of ``bucket``; opens no connection and touches no file yet."""
    if settings.store == "s3":
        access, secret = settings.s3_credentials()
        client = s3_client(
            settings.s3_endpoint,
            access,
            secret,
            secure=settings.s3_secure,
            region=settings.s3_region or "us-east-1",
        )
        return S3Store(client, bucket)
    return FileStore(settings.store_path(), bucket)
