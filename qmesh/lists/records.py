"""A list is a directory record, ``list.<domain>.<name>`` in ``qmesh_directory`` (issue #15).

ezmlm-make's list directory holds the list's flags and its `.qmail-LIST` and
`.qmail-LIST-default` files. Here the flags are this record and the two files are domain
rules ``LIST`` and ``LIST-default`` whose text is :data:`LIST_RULE`: local finds them as it
finds any domain rule (so smtpd's recipient check knows the list's addresses, LOCAL-34) and
hands the message to the lists service instead of running the line. A cluster without the
hook runs the line itself, ``exit 111``: the message waits in the queue, nothing is lost.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from qmesh.directory.names import is_domain_name
from qmesh.directory.records import AccountName, DomainName, Record

LIST_PREFIX = "list."
LIST_RULE = "|exit 111 # a mailing list: handed to the lists service"
MAX_MODERATORS = 100
MAX_PREFIX = 40
MAX_ADDRESS = 254  # RFC 5321's path limit, less the brackets
DEFAULT_BOUNCE_PERIOD = 10 * 86400  # ezmlm-warn's default time before warning/probing
DEFAULT_MODERATION_HOURS = 120.0  # ezmlm-clean's modtime: a held post waits 5 days at most


def _address(value: str) -> str:
    from qmesh.lists.address import address_problem

    problem = address_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _prefix(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("a subject prefix without control characters")
    return value


ListAddress = Annotated[str, AfterValidator(_address)]
Prefix = Annotated[str, Field(max_length=MAX_PREFIX), AfterValidator(_prefix)]


def list_key(domain: str, name: str) -> str:
    if not is_domain_name(domain):
        raise ValueError(f"not a domain name in stored form: {domain[:260]!r}")
    return f"{LIST_PREFIX}{domain}.{name}"


class ListRecord(Record):
    """ezmlm-make's flags: ``-m`` moderated, ``-u`` subscribers only, ``-d`` digest, ``-a``
    archive; ``verp`` asks for a per-subscriber return path (one SMTP transaction each)."""

    kind: Literal["qmesh.list.v1"] = "qmesh.list.v1"
    domain: DomainName
    name: AccountName
    moderated: bool = False
    subscribers_only: bool = False
    digest: bool = False
    archive: bool = False
    verp: bool = False
    # Mailman's personalize: a copy per subscriber with its own RFC 8058 one-click link (and a
    # VERP return path); one enqueue per subscriber instead of one per post
    personal: bool = False
    prefix: Prefix = ""
    owner: ListAddress | None = None
    moderators: Annotated[list[ListAddress], Field(max_length=MAX_MODERATORS)] = Field(
        default_factory=list
    )
    bounce_period: int = Field(default=DEFAULT_BOUNCE_PERIOD, ge=0, le=365 * 86400)
    digest_every: int = Field(default=30, ge=1, le=1000)  # ezmlm-tstdig -m30
    # the oldest waiting post is sent in a digest after this long, by a post or the lists
    # service's timer (ezmlm-tstdig -t, with the daily ezmlm-get -d of ezmlm-idx's crontab)
    digest_hours: float = Field(default=24.0, gt=0, le=24 * 365)
    digest_format: Literal["mime", "rfc1153"] = "mime"  # ezmlm-get -fm or -fr
    # ezmlm-clean: a held post no moderator decided on in this time goes back to its poster
    moderation_hours: float = Field(default=DEFAULT_MODERATION_HOURS, gt=0, le=24 * 365)

    @property
    def key(self) -> str:
        return list_key(self.domain, self.name)

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    def at(self, ext: str) -> str:
        """``LIST-ext@DOMAIN``."""
        return f"{self.name}-{ext}@{self.domain}"
