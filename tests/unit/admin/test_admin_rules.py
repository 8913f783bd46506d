"""admin's pure decisions: form reading, cookie flags, roles (issue 14); the login throttle is
qmesh.limits' (tests/unit/limits)."""

from __future__ import annotations

import pytest

from qmesh.directory.authenticate import Account
from qmesh.directory.roles import Role, role_of
from qmesh.web.forms import BadForm, parse_form
from qmesh.web.security import cookie_secure


@pytest.mark.parametrize(
    ("body", "multiline", "expected"),
    [
        (b"a=1&b=", (), {"a": "1", "b": ""}),
        (b"text=x%0D%0Ay", ("text",), {"text": "x\ny"}),
        (b"", (), {}),
    ],
)
def test_forms_read(body: bytes, multiline: tuple[str, ...], expected: dict[str, str]) -> None:
    assert parse_form(body, multiline) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"a=x%0D%0Ay",  # CR LF outside a multi-line field
        b"a=x%0Ay",
        b"a=%00",
        b"a=%1b[31m",
        b"a=1&a=2",  # one value per name
        b"a=\xff",  # not ASCII
        b"a=" + b"x" * 70_000,
        b"&".join(b"f%d=1" % i for i in range(50)),
        b"text=%00",  # NUL even in a multi-line field
    ],
)
def test_hostile_forms_refused(body: bytes) -> None:
    with pytest.raises(BadForm):
        parse_form(body, ("text",))


@pytest.mark.parametrize(
    ("scheme", "host", "secure"),
    [
        ("http", "127.0.0.1", False),
        ("http", "::1", False),
        ("https", "127.0.0.1", True),
        ("http", "10.1.2.3", True),  # behind a TLS-terminating Ingress
        ("http", "testclient", True),
        ("http", None, True),
    ],
)
def test_cookie_secure_except_plain_loopback(scheme: str, host: str | None, secure: bool) -> None:
    assert cookie_secure(scheme, host) is secure


def test_roles() -> None:
    assert role_of(Account("mx.test", "postmaster"), "mx.test") == Role("postmaster@mx.test", None)
    pm = role_of(Account("a.test", "postmaster"), "mx.test")
    assert pm is not None and pm.may("a.test") and not pm.may("b.test") and not pm.system
    assert role_of(Account("a.test", "alice"), "mx.test") is None
    assert role_of(Account("mx.test", "root"), "mx.test") is None
