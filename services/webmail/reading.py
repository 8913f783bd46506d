"""A stored message as the pages show it: its summary, its text, its HTML made safe, its parts.

Everything here reads hostile input. Headers are decoded by the ``email`` package and shown
through Jinja2's escaping; HTML is cleaned by ``nh3`` (no script, no event handler, no style,
no form, no relative URL); links open in a new browsing context with ``rel="noopener
noreferrer"``; remote images are dropped unless the reader asked for them, and a ``cid:`` image
becomes the URL of its own part. Attachment names are shown escaped and offered for download
under a name with no path, quote or control character.
"""

from __future__ import annotations

import email.policy
import re
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from urllib.parse import quote

import nh3

MAX_NAME = 120
SUMMARY_CACHE = 20_000
_SPACES = re.compile(r"\s+")
_UNSAFE_NAME = re.compile(r'[\\/:*?"<>|;\x00-\x1f\x7f]')
URL_ATTRIBUTES = {"href", "src", "cite", "longdesc", "action", "background"}
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
SCHEMES = {"http", "https", "mailto", "cid"}
TAGS = set(nh3.ALLOWED_TAGS) - {"area", "map"}
ATTRIBUTES = {
    "a": {"href", "hreflang", "title"},
    "img": {"alt", "height", "src", "width", "title"},
    "td": {"align", "colspan", "rowspan"},
    "th": {"align", "colspan", "rowspan", "scope"},
    "table": {"align", "summary"},
    "ol": {"start"},
}


def _text(value: object) -> str:
    """A header value as one line of text (folded, controls removed)."""
    text = _SPACES.sub(" ", str(value or ""))
    return "".join(c for c in text if unicodedata.category(c) != "Cc").strip()


def header(msg: Message, name: str) -> str:
    try:
        return _text(msg.get(name, ""))
    except (ValueError, TypeError, AttributeError, IndexError):  # a malformed header
        raw = msg.get_all(name) or [""]
        return _text(str(raw[0]).encode("ascii", "replace").decode())


def addresses(msg: Message, *names: str) -> list[str]:
    """The addr-specs of the named address fields, as written (case kept)."""
    values = [header(msg, n) for n in names]
    return [addr for _, addr in getaddresses([v for v in values if v]) if "@" in addr]


@dataclass(frozen=True, slots=True)
class Summary:
    subject: str
    sender: str  # the From field as shown
    date: str
    when: float | None  # the Date field, Unix seconds


def summarise(raw: bytes) -> Summary:
    msg = BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    date = header(msg, "date")
    try:
        when: float | None = parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError, IndexError, OverflowError):
        when = None
    return Summary(header(msg, "subject"), header(msg, "from"), date, when)


class SummaryCache:
    """Summaries by object key: a message object never changes under its key (Maildir)."""

    def __init__(self, size: int = SUMMARY_CACHE) -> None:
        self._size = size
        self._items: OrderedDict[str, Summary] = OrderedDict()

    def get(self, key: str) -> Summary | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: str, summary: Summary) -> None:
        self._items[key] = summary
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def safe_filename(name: str | None, fallback: str = "attachment") -> str:
    """A download name: no directory, quote, control or reserved character; bounded."""
    text = _text(name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE_NAME.sub("_", text).strip(". ")
    return text[:MAX_NAME] or fallback


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact one as RFC 6266 ``filename*``."""
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_") or "attachment"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@dataclass(frozen=True, slots=True)
class Part:
    index: int
    name: str  # the download name (safe_filename)
    content_type: str
    size: int
    content_id: str


@dataclass
class View:
    subject: str
    sender: str
    to: str
    cc: str
    date: str
    text: str
    html: str | None
    parts: list[Part]
    blocked_images: int = 0
    reply_to: str = ""
    message_id: str = ""
    references: str = ""
    bodies: list[int] = field(default_factory=list)


def _decoded(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        return content if isinstance(content, str) else ""
    except (LookupError, ValueError, KeyError, AssertionError):
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def leaves(msg: EmailMessage) -> list[Message]:
    """Every non-multipart part in document order; an attached message is one leaf."""
    out: list[Message] = []
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop(0)
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            children = part.get_payload()
            stack[0:0] = [c for c in children if isinstance(c, Message)] if children else []
        else:
            out.append(part)
    return out


def _payload_size(part: Message) -> int:
    payload = part.get_payload(decode=True)
    return len(payload) if isinstance(payload, bytes) else len(str(part.get_payload()))


def sanitise(html: str, part_url: dict[str, str], images: bool) -> tuple[str, int]:
    """Clean HTML; returns it and how many remote images were left out."""
    blocked = 0

    def keep(tag: str, attribute: str, value: str) -> str | None:
        nonlocal blocked
        if tag == "img" and attribute == "src":
            low = value.strip().lower()
            if low.startswith("cid:"):
                return part_url.get(value.strip()[4:].strip("<>"))  # this page's own URL
            if not images:
                blocked += 1
                return None
        if attribute in URL_ATTRIBUTES and not _ABSOLUTE.match(value.strip()):
            return None  # relative or protocol-relative: never a URL of this site
        return value

    clean = nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags={"script", "style", "title", "head"},
        attributes=ATTRIBUTES,
        attribute_filter=keep,
        strip_comments=True,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes=SCHEMES,
        url_relative="pass_through",  # only the part URLs put in above; keep() drops the rest
    )
    return clean, blocked


def view(raw: bytes, part_url: str, images: bool = False) -> View:
    """The message for the read page; ``part_url`` is the download URL with ``{n}`` in it."""
    msg = parse(raw)
    body_text = msg.get_body(preferencelist=("plain",))
    body_html = msg.get_body(preferencelist=("html",))
    bodies = [p for p in (body_text, body_html) if p is not None]
    parts: list[Part] = []
    cid_urls: dict[str, str] = {}
    for n, leaf in enumerate(leaves(msg)):
        if any(leaf is b for b in bodies):
            continue
        cid = header(leaf, "content-id").strip("<>")
        name = safe_filename(leaf.get_filename(), f"part-{n}")
        parts.append(Part(n, name, leaf.get_content_type(), _payload_size(leaf), cid))
        if cid:
            cid_urls[cid] = part_url.format(n=n)
    html = None
    blocked = 0
    if body_html is not None:
        html, blocked = sanitise(_decoded(body_html), cid_urls, images)
    return View(
        subject=header(msg, "subject"),
        sender=header(msg, "from"),
        to=header(msg, "to"),
        cc=header(msg, "cc"),
        date=header(msg, "date"),
        text=_decoded(body_text) if body_text is not None else "",
        html=html,
        parts=parts,
        blocked_images=blocked,
        reply_to=header(msg, "reply-to"),
        message_id=header(msg, "message-id"),
        references=header(msg, "references"),
    )


def part_bytes(raw: bytes, n: int) -> tuple[str, bytes] | None:
    """The download name and decoded content of leaf ``n``; ``None`` if there is none."""
    found = leaves(parse(raw))
    if not 0 <= n < len(found):
        return None
    leaf = found[n]
    if leaf.get_content_type() == "message/rfc822" or leaf.is_multipart():
        inner = leaf.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        data = first.as_bytes() if isinstance(first, Message) else b""
        return safe_filename(leaf.get_filename(), f"message-{n}.eml"), data
    payload = leaf.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return safe_filename(leaf.get_filename(), f"part-{n}"), data
