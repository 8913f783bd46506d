"""A digest: the waiting posts in one MIME message, RFC 1153's table of contents first. Pure.

ezmlm-get -d sends a ``multipart/digest``; here the first part is a plain-text table of
contents (number, subject, author, as RFC 1153's plain digests list them), then each post as a
``message/rfc822`` part of a ``multipart/digest``.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage
from email.parser import BytesParser

from qmesh.lists.records import ListRecord
from services.lists import post

_PARSER = BytesParser(policy=email.policy.default)


def compose(record: ListRecord, posts: list[tuple[int, bytes]], when: float) -> bytes:
    first, last = posts[0][0], posts[-1][0]
    toc = [f"{record.address} Digest of messages {first} to {last}", "", "Topics (messages):", ""]
    digest = EmailMessage()
    digest.make_mixed()
    inner = EmailMessage()
    inner.set_type("multipart/digest")
    for number, raw in posts:
        fields, _ = post.split(raw)
        subject = post.first(fields, "subject") or "(no subject)"
        author = post.first(fields, "from") or "(unknown)"
        toc.append(f"  {number}. {subject[:200]}  -- {author[:200]}")
        part = EmailMessage()
        part.set_type("message/rfc822")
        part.set_payload([_PARSER.parsebytes(raw)])
        inner.attach(part)
    toc += ["", f"Administrivia: {record.at('help')}", ""]
    head = EmailMessage()
    head.set_content("\n".join(toc))
    digest.attach(head)
    digest.attach(inner)
    digest["From"] = record.at("help")
    digest["To"] = record.address
    digest["Subject"] = f"{record.name} Digest {first}-{last}"
    digest["Date"] = email.utils.formatdate(when)
    digest["Message-ID"] = email.utils.make_msgid("digest", record.domain)
    for line in post.list_fields(record):
        name, _, value = line.partition(": ")
        digest[name] = value
    return digest.as_bytes(policy=email.policy.SMTP.clone(linesep="\n"))
