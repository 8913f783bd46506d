"""Reading a submitted form (application/x-www-form-urlencoded) as untrusted input.

One value per name; a line break, NUL or other control character is refused in every field
but the multi-line ones (a rule's text), where CR LF becomes LF. Sizes are bounded.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from urllib.parse import parse_qsl

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 20


class BadForm(ValueError):
    """The submission is refused as a whole; ``str(err)`` says why, without echoing it."""


def _control(text: str, multiline: bool) -> bool:
    for c in text:
        if multiline and c in "\n\t":
            continue
        if unicodedata.category(c) == "Cc":
            return True
    return False


def parse_form(body: bytes, multiline: Collection[str] = ()) -> dict[str, str]:
    if len(body) > MAX_FORM_BYTES:
        raise BadForm("the form is too large")
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as err:
        raise BadForm("the form cannot be read") from err
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise BadForm(f"the field {name[:40]!r} is given twice")
        many = name in multiline
        if many:
            value = value.replace("\r\n", "\n")
        if _control(name, False) or _control(value, many):
            raise BadForm(f"the field {name[:40]!r} contains a line break or control character")
        form[name] = value
    return form
