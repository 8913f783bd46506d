"""The put arguments both adapters check the same way (ARCH-26)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest

from qmesh.store.upload import BadMetadata, check_metadata, write_body


def test_metadata_keys_lower_case_values_printable() -> None:
    assert check_metadata(None) == {}
    assert check_metadata({"qp": "42", "size-x": "a b ~"}) == {"qp": "42", "size-x": "a b ~"}


@pytest.mark.parametrize(
    "metadata",
    [
        {"Qp": "1"},  # S3 would hand it back lower-cased: refuse it on every store
        {"": "1"},
        {"-x": "1"},
        {"a_b": "1"},
        {"a b": "1"},
        {"x-amz-meta-é": "1"},
        {"qp": "line\nbreak"},
        {"qp": "ü"},
        {"qp": "x" * 2049},
        {f"k{i}": "x" * 100 for i in range(30)},
    ],
)
def test_bad_metadata_is_refused(metadata: dict[str, str]) -> None:
    with pytest.raises(BadMetadata):
        check_metadata(metadata)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_write_body_takes_bytes_or_chunks_and_counts() -> None:
    out = io.BytesIO()
    assert await write_body(b"abc", out) == 3
    assert await write_body(chunks(b"d", b"", b"ef" * 10), out, batch=4) == 21
    assert out.getvalue() == b"abcd" + b"ef" * 10


async def test_write_body_refuses_text() -> None:
    with pytest.raises(TypeError):
        await write_body("text", io.BytesIO())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await write_body(chunks("text"), io.BytesIO())  # type: ignore[arg-type]
