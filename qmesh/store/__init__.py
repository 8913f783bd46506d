"""Object storage: the :class:`BlobStore` port, key rules and two adapters (S3, directory)."""
