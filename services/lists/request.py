"""What a message to a list address asks for: ezmlm's address grammar (issue #15). Pure.

``LIST@`` post; ``LIST-subscribe[-box=host]@``, ``LIST-unsubscribe[-box=host]@``,
``LIST-digest-subscribe@``, ``LIST-digest-unsubscribe@`` requests; ``LIST-sc.``/``uc.``/``dc.``/
``du.`` confirmations; ``LIST-help@``; ``LIST-owner@``; ``LIST-accept-ID.MAC@`` and
``LIST-reject-ID.MAC@`` moderation; ``LIST-return-...@`` bounces; ``LIST-get.N@`` archive.
Anything else is answered with the help text, as ezmlm-manage does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qmesh.lists.address import verp_decode

Kind = Literal[
    "post", "subscribe", "unsubscribe", "confirm", "help", "owner", "moderate", "return", "get"
]


@dataclass(frozen=True, slots=True)
class Request:
    kind: Kind
    digest: bool = False  # the digest list instead of the main one
    target: str | None = None  # box@host from the ext (subscribe, unsubscribe, return)
    action: str = ""  # confirm: sc/uc/dc/du; moderate: accept/reject; return: number or probe
    rest: str = ""  # confirm: what follows "<action>."; moderate: "ID.MAC"
    number: int | None = None  # get.N, return-N


def parse(ext: str) -> Request:
    lowered = ext.lower()
    if ext == "":
        return Request("post")
    for prefix, digest in (("digest-", True), ("", False)):
        for word in ("subscribe", "unsubscribe"):
            head = prefix + word
            if lowered == head:
                return Request(word, digest)
            if lowered.startswith(head + "-"):
                return Request(word, digest, target=verp_decode(ext[len(head) + 1 :]) or "")
    action, dot, _ = lowered.partition(".")
    if dot and action in ("sc", "uc", "dc", "du"):
        return Request(
            "confirm", action in ("dc", "du"), action=action, rest=ext[len(action) + 1 :]
        )
    for word in ("accept", "reject"):
        if lowered.startswith(word + "-"):
            return Request("moderate", action=word, rest=ext[len(word) + 1 :])
    if lowered == "return" or lowered.startswith("return-"):
        return _return(ext[len("return-") :])
    if lowered.startswith("get.") and lowered[4:].isdigit() and len(lowered) < 16:
        return Request("get", number=int(lowered[4:]))
    if lowered == "owner" or lowered.startswith("owner-"):
        return Request("owner")
    return Request("help")


def _return(rest: str) -> Request:
    """``return-N-box=host``, ``return-N-`` (qmail's own bounce), ``return-warn-box=host``,
    ``return-probe-box=host``."""
    head, _, verp = rest.partition("-")
    target = verp_decode(verp) if verp else None
    if head.lower() in ("probe", "warn"):
        return Request("return", target=target, action=head.lower())
    number = int(head) if head.isdigit() and len(head) < 12 else None
    return Request("return", target=target, action="post", number=number)
