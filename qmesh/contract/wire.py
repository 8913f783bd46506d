"""JSON for events and records in which addresses are opaque byte strings (ARCH-23).

An address may hold any byte but NUL; bytes that are not UTF-8 live in a ``str`` as
surrogate escapes. pydantic's own JSON refuses those, so models go to JSON through Python's
``json`` with ASCII escapes (``\\udcff``), which reads back to the same string: every address
round-trips exactly. Malformed input still raises pydantic's ``ValidationError``.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def dumps(model: BaseModel) -> bytes:
    return json.dumps(
        model.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":")
    ).encode("ascii")


def loads(cls: type[M], data: bytes) -> M:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return cls.model_validate_json(data)  # raises the ValidationError callers expect
    return cls.model_validate(obj)
