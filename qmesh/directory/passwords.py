"""Password verifiers: Argon2id in PHC string form (LOCAL-52, LOCAL-59, POP3-05).

New verifiers use the OWASP password-storage parameters (Argon2id, 19 MiB, 2 iterations,
1 lane). A check recomputes the hash with the parameters stored in the verifier; the
comparison happens inside libargon2 in constant time. Every check costs one verification,
even for an account that does not exist or has no verifier: it is then made against a fixed
dummy verifier, so the reply time does not tell whether an account exists.

Verification is CPU-heavy: an event loop calls :func:`verify_password_async`, which runs it in
a worker thread (libargon2 releases the GIL).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from qmesh.directory.errors import InvalidPassword

MAX_PASSWORD_BYTES = 500  # POP3-05 allows 512 bytes for name and password together


@dataclass(frozen=True, slots=True)
class HashParams:
    time_cost: int
    memory_kib: int
    parallelism: int


# OWASP Password Storage Cheat Sheet, Argon2id: m=19 MiB, t=2, p=1.
OWASP = HashParams(time_cost=2, memory_kib=19 * 1024, parallelism=1)

# A verifier of a random password nobody knows, with the OWASP parameters. Checked in place of
# a missing or unusable verifier so that every failed login costs the same (LOCAL-59).
DUMMY_VERIFIER = (
    "$argon2id$v=19$m=19456,t=2,p=1$29I/BOsZmytI/hqYTHKq5g"
    "$rPu2xXhvqfeS/gko3ViCI8Y1/8ZjSzm8rAM5HXXiX3s"
)

_VERIFIER = PasswordHasher(type=Type.ID)  # verify() reads the parameters from the verifier

# What a stored verifier may look like; the bounds keep a tampered record from making one
# login cost gigabytes or minutes (records are validated as untrusted input, ARCH-22).
PHC_RE = re.compile(
    r"\$argon2id\$v=19\$m=([0-9]{1,7}),t=([0-9]{1,3}),p=([0-9]{1,2})"
    r"\$[A-Za-z0-9+/]{11,64}\$[A-Za-z0-9+/]{16,128}"
)
MAX_MEMORY_KIB = 256 * 1024
MAX_TIME_COST = 16
MAX_PARALLELISM = 8


def _hasher(params: HashParams) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


def check_password(password: str) -> str:
    """``password`` unchanged if it can be stored and typed in POP3, else InvalidPassword."""
    if not password:
        raise InvalidPassword("the password is empty")
    if len(password.encode("utf-8", "surrogateescape")) > MAX_PASSWORD_BYTES:
        raise InvalidPassword(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    if any(c in password for c in "\0\r\n"):
        raise InvalidPassword("the password contains NUL, CR or LF")
    return password


def hash_password(password: str, params: HashParams = OWASP) -> str:
    """A new Argon2id verifier for ``password`` in PHC string form.

    ``params`` other than :data:`OWASP` are for tests that must keep hashing cheap.
    """
    return _hasher(params).hash(check_password(password))


def verifier_problem(verifier: str) -> str | None:
    """Why ``verifier`` is not a usable Argon2id PHC string, or None."""
    m = PHC_RE.fullmatch(verifier)
    if m is None:
        return "not an Argon2id PHC string"
    memory, time_cost, lanes = (int(g) for g in m.groups())
    if not (8 * lanes <= memory <= MAX_MEMORY_KIB):
        return "memory parameter out of range"
    if not (1 <= time_cost <= MAX_TIME_COST and 1 <= lanes <= MAX_PARALLELISM):
        return "time or parallelism parameter out of range"
    return None


def _usable(verifier: str | None) -> bool:
    return verifier is not None and verifier_problem(verifier) is None


def verify_password(verifier: str | None, password: str) -> bool:
    """True if ``password`` matches ``verifier``; always spends exactly one verification.

    A missing, malformed or non-Argon2id verifier is checked against :data:`DUMMY_VERIFIER`
    and fails.
    """
    real = _usable(verifier)
    target = verifier if real and verifier is not None else DUMMY_VERIFIER
    ok: bool
    try:
        ok = _VERIFIER.verify(target, password)
    except (VerifyMismatchError, VerificationError):
        ok = False
    except InvalidHashError:
        if target != DUMMY_VERIFIER:
            return verify_password(None, password)
        ok = False
    return ok and real


async def verify_password_async(verifier: str | None, password: str) -> bool:
    """:func:`verify_password` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(verify_password, verifier, password)
