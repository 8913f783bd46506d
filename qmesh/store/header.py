"""An object's metadata inside its own file, ahead of the body (the directory store).

An object with metadata (or whose body happens to begin with :data:`MAGIC`) is stored as::

    MAGIC (16 bytes) | n: length of the JSON (4 bytes, big-endian) | metadata as JSON (n bytes)

followed by the body. Any other file is the body alone: an object put without metadata, or an
object written by a release that kept metadata in a ``.meta-*`` sidecar file. A reader that
wants only the size or the metadata reads the first ``PREFIX + n`` bytes, never the body.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO

MAGIC = b"\x00qmesh-object1\n\x00"
PREFIX = len(MAGIC) + 4
MAX_JSON = 64 * 1024  # metadata is at most 2 KiB (upload.MAX_METADATA_BYTES) before quoting
_LENGTH = struct.Struct(">I")


class BadHeader(OSError):
    """A file that starts like a header but is not one: damaged, or not written by this store."""


def needs_header(metadata: dict[str, str], start: bytes) -> bool:
    """Whether an object needs a header; ``start`` is its body, or at least its first bytes."""
    return bool(metadata) or start.startswith(MAGIC)


def encode(metadata: dict[str, str]) -> bytes:
    text = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode("ascii")
    return MAGIC + _LENGTH.pack(len(text)) + text


def header_length(prefix: bytes) -> int:
    """Bytes before the body, given the file's first :data:`PREFIX` bytes (or all, if fewer)."""
    if not prefix.startswith(MAGIC):
        return 0
    if len(prefix) < PREFIX:
        raise BadHeader("object file ends inside its header")
    n: int = _LENGTH.unpack_from(prefix, len(MAGIC))[0]
    if n > MAX_JSON:
        raise BadHeader(f"object header claims {n} bytes of metadata")
    return PREFIX + n


def read_header(f: BinaryIO) -> tuple[dict[str, str] | None, int]:
    """Read the header of an object file opened at its start; leave ``f`` at the body.

    Returns ``(metadata, offset of the body)``, metadata ``None`` for a file without a header.
    """
    prefix = f.read(PREFIX)
    length = header_length(prefix)
    if length == 0:
        f.seek(0)
        return None, 0
    text = f.read(length - PREFIX)
    if len(text) != length - PREFIX:
        raise BadHeader("object file ends inside its header")
    return parse_metadata(text), length


def read_body(path: Path) -> bytes:
    """The body of one object file of the directory store, whichever layout wrote it (for
    tools and tests that look at the files themselves; services go through the store)."""
    with path.open("rb") as f:
        read_header(f)
        return f.read()


def parse_metadata(text: bytes) -> dict[str, str]:
    try:
        loaded = json.loads(text.decode("ascii"))
    except ValueError as err:
        raise BadHeader(f"object header holds no metadata: {err}") from err
    if not isinstance(loaded, dict):
        raise BadHeader("object header holds no metadata")
    return {str(k): str(v) for k, v in loaded.items()}
