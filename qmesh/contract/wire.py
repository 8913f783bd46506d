"""JSON for events and records in which addresses are opaque byte strings (ARCH-23).

An address may hold any byte but NUL; bytes that are not UTF-8 live in a ``str`` as
surrogate escapes. Both directions go through pydantic-core's own JSON, in Rust, with the
models' full validation (ARCH-22): parsing and checking an event there costs a few
microseconds, against several times that for Python's ``json`` followed by validation of the
resulting dict. pydantic-core's JSON cannot carry a lone surrogate, so a model holding one goes
through Python's ``json`` with ASCII escapes (``\\udcff``) instead, and a payload that contains
such an escape is read back the same way: every address round-trips exactly. Either way the
output is JSON that :func:`loads` reads, and malformed input raises pydantic's
``ValidationError``.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

M = TypeVar("M", bound=BaseModel)


def dumps(model: BaseModel) -> bytes:
    try:
        return model.__pydantic_serializer__.to_json(model)
    except PydanticSerializationError:  # a lone surrogate: an address that is not UTF-8
        return json.dumps(
            model.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":")
        ).encode("ascii")


def loads(cls: type[M], data: bytes) -> M:
    if b"\\ud" not in data and b"\\uD" not in data:  # no lone surrogate can be in it
        return cls.model_validate_json(data)
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return cls.model_validate_json(data)  # raises the ValidationError callers expect
    return cls.model_validate(obj)
