"""A digest: the waiting posts in one message, in the list's format (ezmlm-get -f). Pure.

``mime`` (the default, ezmlm-get -fm): a ``multipart/mixed`` whose first part is a plain-text
table of contents (number, subject, author, as RFC 1153's digests list them), then each post
as a ``message/rfc822`` part of a ``multipart/digest``.

``rfc1153`` (ezmlm-get -fr): one ``text/plain`` message laid out as RFC 1153 asks, readable in
any mail program: a header line with volume and issue, "Today's Topics", a line of 70 hyphens,
then each post as its ``Date``, ``From`` and ``Subject`` and its text, posts separated by 30
hyphens, and the ``End of ... Digest`` line underlined with asterisks. A post without a text
part is named and left out (it is in the archive); a line of a post that would read as a
separator is indented by one space, so the digest can always be split back into posts.
"""

from __future__ import annotations

import email.policy
import email.utils
import time
from email.message import EmailMessage
from email.parser import BytesParser

from qmesh.lists.records import ListRecord
from services.lists import post

_PARSER = BytesParser(policy=email.policy.default)
TOPICS_RULE = "-" * 70
SEPARATOR = "-" * 30
MAX_TEXT = 256 * 1024  # characters of one post's text in a plain digest


def compose(
    record: ListRecord, posts: list[tuple[int, bytes]], when: float, issue: int = 0
) -> bytes:
    if record.digest_format == "rfc1153":
        return _rfc1153(record, posts, when, issue)
    return _mime(record, posts, when)


def _head(record: ListRecord, digest: EmailMessage, subject: str, when: float) -> None:
    digest["From"] = record.at("help")
    digest["To"] = record.address
    digest["Subject"] = subject
    digest["Date"] = email.utils.formatdate(when)
    digest["Message-ID"] = email.utils.make_msgid("digest", record.domain)
    for line in post.list_fields(record):
        name, _, value = line.partition(": ")
        digest[name] = value


def _mime(record: ListRecord, posts: list[tuple[int, bytes]], when: float) -> bytes:
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
    _head(record, digest, f"{record.name} Digest {first}-{last}", when)
    return digest.as_bytes(policy=email.policy.SMTP.clone(linesep="\n"))


def _text_of(raw: bytes) -> str | None:
    """The post's plain text, or None if it has none."""
    parsed = _PARSER.parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(preferencelist=("plain",))
    if body is None:
        return None
    try:
        text = body.get_content()
    except (LookupError, ValueError, AssertionError):
        return None
    return text if isinstance(text, str) else None


def _safe(line: str) -> str:
    """A post's line that could be read as a separator or the end line gets a space."""
    stripped = line.rstrip()
    if stripped and (
        (set(stripped) <= {"-"} and len(stripped) >= 30) or stripped.startswith("End of ")
    ):
        return " " + line
    return line


def _rfc1153(record: ListRecord, posts: list[tuple[int, bytes]], when: float, issue: int) -> bytes:
    first, last = posts[0][0], posts[-1][0]
    volume = time.gmtime(when).tm_year
    title = f"{record.name} Digest"
    date = time.strftime("%a, %d %b %Y", time.gmtime(when))
    lines = [f"{title}    {date}    Volume {volume} : Issue {issue}", "", "Today's Topics:", ""]
    entries: list[list[str]] = []
    for number, raw in posts:
        fields, _ = post.split(raw)
        subject = post.first(fields, "subject") or "(no subject)"
        author = post.first(fields, "from") or "(unknown)"
        lines.append(f"   {number}. {subject[:200]}")
        entry = [
            f"Date: {(post.first(fields, 'date') or '')[:200]}",
            f"From: {author[:200]}",
            f"Subject: {subject[:200]}",
            f"Message: {number}",
            "",
        ]
        text = _text_of(raw)
        if text is None:
            entry.append(f"[no plain text; the post is message {number} of the archive]")
        else:
            entry += [_safe(line) for line in text[:MAX_TEXT].splitlines()]
        entries.append(entry)
    lines += ["", f"Administrivia: {record.at('help')}", "", TOPICS_RULE, ""]
    for entry in entries:
        lines += [*entry, "", SEPARATOR, ""]
    end = f"End of {title} V{volume} Issue #{issue}"
    lines += [end, "*" * len(end), ""]
    digest = EmailMessage()
    digest.set_content("\n".join(lines))
    _head(record, digest, f"{title} V{volume} #{issue} (messages {first}-{last})", when)
    return digest.as_bytes(policy=email.policy.SMTP.clone(linesep="\n"))
