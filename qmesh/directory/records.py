"""Directory records: versioned, frozen documents in the KV bucket (LOCAL-50..LOCAL-52, ARCH-23).

A record carries its own names; its key is built from them (section 1.4: ``domain.<domain>``,
``account.<domain>.<account>``) and never parsed back. Whatever is read from the bucket is
validated as if it came from the Internet (ARCH-22): names, rule names, rule texts, the
verifier's form and parameters, and the quota are all checked on every decode.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from qmesh.directory.names import (
    check_account_name,
    is_account_name,
    is_domain_name,
    is_rule_name,
)
from qmesh.directory.passwords import verifier_problem
from qmesh.directory.rules import MAX_RULE_BYTES

DOMAIN_PREFIX = "domain."
ACCOUNT_PREFIX = "account."
MAX_RULES = 1000
MAX_QUOTA = 2**53


def _domain(value: str) -> str:
    if not is_domain_name(value):
        raise ValueError(f"not a domain name in stored form: {value[:260]!r}")
    return value


def _account(value: str) -> str:
    if not is_account_name(value):
        raise ValueError(f"not an account name: {value[:70]!r}")
    return value


def _rule_name(value: str) -> str:
    if not is_rule_name(value):
        raise ValueError(f"not a rule name in safeext form: {value[:210]!r}")
    return value


def _rule_text(value: str) -> str:
    if "\0" in value or len(value.encode("utf-8", "surrogateescape")) > MAX_RULE_BYTES:
        raise ValueError("rule text with NUL or longer than the limit")
    return value


def _verifier(value: str) -> str:
    problem = verifier_problem(value)
    if problem is not None:
        raise ValueError(f"verifier: {problem}")
    return value


MAX_VACATION_SUBJECT = 200
MAX_VACATION_TEXT = 8000
MAX_VACATION_DAYS = 7  # vacation(1)'s default interval; the delivery ledger keeps 8 days


def _controls(value: str, allowed: str) -> str:
    if any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in value):
        raise ValueError("a line break or control character where none may be")
    return value


def _subject(value: str) -> str:
    return _controls(value, "")


def _reply_text(value: str) -> str:
    return _controls(value, "\n\t")


DomainName = Annotated[str, AfterValidator(_domain)]
AccountName = Annotated[str, AfterValidator(_account)]
RuleName = Annotated[str, AfterValidator(_rule_name)]
RuleText = Annotated[str, AfterValidator(_rule_text)]
Verifier = Annotated[str, AfterValidator(_verifier)]
Rules = Annotated[dict[RuleName, RuleText], Field(max_length=MAX_RULES)]


def domain_key(domain: str) -> str:
    """``domain.<domain>`` for a validated domain name."""
    return DOMAIN_PREFIX + _domain(domain)


def account_prefix(domain: str) -> str:
    """``account.<domain>.``: every account key of ``domain`` starts with it.

    Other keys may too (``account.a.b.c`` could be account ``c`` of ``a.b`` or ``b.c`` of
    ``a``), so a listing keeps only the records whose own ``domain`` field matches.
    """
    return f"{ACCOUNT_PREFIX}{_domain(domain)}."


def account_key(domain: str, name: str) -> str:
    """``account.<domain>.<account>`` for validated names."""
    return account_prefix(domain) + check_account_name(name)


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Validate a stored record; raises ``pydantic.ValidationError``."""
        return cls.model_validate_json(data)

    def changed(self, **fields: Any) -> Self:
        """A copy with ``fields`` replaced, validated like a decoded record."""
        return type(self).model_validate({**self.model_dump(), **fields})

    @property
    def key(self) -> str:
        raise NotImplementedError


class DomainRecord(Record):
    """A domain and its domain rules (LOCAL-51): qmail's alias user for this namespace."""

    kind: Literal["qmesh.domain.v1"] = "qmesh.domain.v1"
    name: DomainName
    enabled: bool = True
    rules: Rules = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return domain_key(self.name)


class Vacation(BaseModel):
    """An account's vacation reply (qmailadmin's autoresponder, vacation(1)): sent by local to
    each sender at most once in ``days`` days, never to lists, bounces or other robots."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: Annotated[
        str, Field(min_length=1, max_length=MAX_VACATION_SUBJECT), AfterValidator(_subject)
    ]
    text: Annotated[
        str, Field(min_length=1, max_length=MAX_VACATION_TEXT), AfterValidator(_reply_text)
    ]
    days: int = Field(default=MAX_VACATION_DAYS, ge=1, le=MAX_VACATION_DAYS)


class AccountRecord(Record):
    """An account of a namespace (LOCAL-52). ``verifier`` is never shown or logged."""

    kind: Literal["qmesh.account.v1"] = "qmesh.account.v1"
    domain: DomainName
    name: AccountName
    verifier: Verifier | None = Field(default=None, repr=False)
    quota: int | None = Field(default=None, ge=1, le=MAX_QUOTA)
    enabled: bool = True
    rules: Rules = Field(default_factory=dict)
    vacation: Vacation | None = None

    @property
    def key(self) -> str:
        return account_key(self.domain, self.name)

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"
