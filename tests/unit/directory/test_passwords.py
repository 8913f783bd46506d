"""Password verifiers: Argon2id PHC strings, one verification per check (LOCAL-59, POP3-05)."""

from __future__ import annotations

import time

import pytest

from qmesh.directory.errors import InvalidPassword
from qmesh.directory.passwords import (
    DUMMY_VERIFIER,
    OWASP,
    HashParams,
    hash_password,
    verifier_problem,
    verify_password,
    verify_password_async,
)

CHEAP = HashParams(time_cost=1, memory_kib=8, parallelism=1)


def test_default_parameters_are_at_least_owasp_local59() -> None:
    assert OWASP.memory_kib >= 19 * 1024
    assert OWASP.time_cost >= 2
    verifier = hash_password("correct horse")
    assert verifier.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(verifier, "correct horse")


def test_verifier_is_salted_and_never_the_plaintext() -> None:
    a, b = hash_password("s3cret", CHEAP), hash_password("s3cret", CHEAP)
    assert a != b
    assert "s3cret" not in a
    assert verifier_problem(a) is None


def test_right_and_wrong_passwords() -> None:
    verifier = hash_password("pässwörd", CHEAP)
    assert verify_password(verifier, "pässwörd")
    assert not verify_password(verifier, "passwort")
    assert not verify_password(verifier, "")


@pytest.mark.parametrize(
    "verifier",
    [
        None,
        "",
        "plaintext",
        "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$2b$12$x",
    ],
)
def test_missing_or_unusable_verifier_fails_pop305(verifier: str | None) -> None:
    assert not verify_password(verifier, "anything")


def test_no_verifier_still_costs_one_verification_local59() -> None:
    """An unknown account costs what a wrong password costs: one OWASP-strength hash."""
    real = hash_password("pw")  # OWASP parameters, like every stored verifier
    verify_password(real, "warm-up")

    def cost(verifier: str | None) -> float:
        start = time.perf_counter()
        for _ in range(3):
            assert not verify_password(verifier, "wrong")
        return time.perf_counter() - start

    wrong, missing = cost(real), cost(None)
    assert missing > wrong * 0.3  # the same work, give or take a busy machine


def test_dummy_verifier_has_owasp_parameters() -> None:
    assert verifier_problem(DUMMY_VERIFIER) is None
    assert "$m=19456,t=2,p=1$" in DUMMY_VERIFIER


@pytest.mark.parametrize(
    ("verifier", "problem"),
    [
        ("$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", "memory"),
        ("$argon2id$v=19$m=19456,t=99,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", "time"),
    ],
)
def test_verifiers_with_extreme_parameters_are_unusable(verifier: str, problem: str) -> None:
    """A tampered record must not make one login cost gigabytes (ARCH-22)."""
    found = verifier_problem(verifier)
    assert found is not None and problem in found
    assert not verify_password(verifier, "x")


@pytest.mark.parametrize("password", ["", "a\nb", "a\rb", "a\0b", "x" * 501])
def test_unstorable_passwords_refused(password: str) -> None:
    with pytest.raises(InvalidPassword):
        hash_password(password, CHEAP)


async def test_async_verification_runs_off_the_loop() -> None:
    verifier = hash_password("pw", CHEAP)
    assert await verify_password_async(verifier, "pw")
    assert not await verify_password_async(None, "pw")
