"""webmail's pure parts against hostile input: cleaning HTML, naming downloads, reading any
bytes as a message, and building what is sent (issue 14, QUEUE-03)."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.webmail.reading import (
    content_disposition,
    part_bytes,
    safe_filename,
    sanitise,
    summarise,
    view,
)
from services.webmail.send import (
    Attachment,
    BadMessage,
    Draft,
    build,
    parse_recipients,
    recipients,
)

EVENT = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        '<a href="javascript:alert(1)">x</a>',
        '<a href="JaVaScRiPt:alert(1)">x</a>',
        '<a href="&#106;avascript:alert(1)">x</a>',
        "<iframe src=https://evil.test></iframe>",
        "<object data=x></object><embed src=x>",
        '<form action="https://evil.test"><input name=p></form>',
        "<style>body{background:url(https://evil.test)}</style>",
        '<p style="background:url(https://evil.test/x)">x</p>',
        '<meta http-equiv="refresh" content="0;url=https://evil.test">',
        '<base href="https://evil.test/">',
        '<a href="/logout">relative</a>',
        "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
        "<!--<script>alert(1)</script>-->",
        "<scr<script>ipt>alert(1)</script>",
    ],
)
def test_hostile_html_is_defused(html: str) -> None:
    clean, _ = sanitise(html, {}, images=False)
    low = clean.lower()
    for bad in ("<script", "javascript:", "<iframe", "<object", "<embed", "<form", "<input"):
        assert bad not in low
    for bad in ("<style", "style=", "<meta", "<base", "<svg", 'href="/'):
        assert bad not in low
    assert EVENT.search(clean) is None


def test_links_open_apart_and_remote_images_wait() -> None:
    html = '<a href="https://example.test/">x</a><img src="https://t.test/p.gif" alt="p">'
    clean, blocked = sanitise(html, {}, images=False)
    assert 'target="_blank"' in clean and 'rel="noopener noreferrer"' in clean
    assert "t.test" not in clean and blocked == 1
    shown, blocked = sanitise(html, {}, images=True)
    assert 'src="https://t.test/p.gif"' in shown and blocked == 0


def test_cid_images_become_their_part() -> None:
    clean, blocked = sanitise(
        '<img src="cid:logo@x">', {"logo@x": "/part?f=INBOX&uid=1&n=2"}, False
    )
    assert 'src="/part?f=INBOX&amp;uid=1&amp;n=2"' in clean and blocked == 0
    clean, _ = sanitise('<img src="cid:unknown">', {}, False)
    assert "cid:" not in clean


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\evil.exe", "evil.exe"),
        ('a"b;c\r\nContent-Type: text/html', "html"),
        ("<script>alert(1)</script>.html", "script_.html"),
        ('evil"; filename="x.exe', "evil__ filename=_x.exe"),
        ("...", "attachment"),
        ("", "attachment"),
        (None, "attachment"),
        ("ü" * 300, "ü" * 120),
    ],
)
def test_download_names_are_safe(given: str | None, expected: str) -> None:
    name = safe_filename(given)
    assert name.startswith(expected[:20])
    assert not set(name) & set('/\\"<>:;\r\n\0')
    header = content_disposition(name)
    assert header.startswith('attachment; filename="') and "\r" not in header
    assert "\n" not in header


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_read_as_a_message_without_raising(raw: bytes) -> None:
    shown = view(raw, "/part?n={n}")
    summarise(raw)
    for part in shown.parts:
        part_bytes(raw, part.index)
    assert EVENT.search(shown.html or "") is None


MIME = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n",
        b"Content-Type: text/html; charset=unknown-8bit\nContent-Transfer-Encoding: base64\n\n",
        b"Content-Type: multipart/alternative; boundary=\n\n--\n",
        b"Content-Type: message/rfc822\n\n",
        b"Subject: =?utf-8?b?!!!?=\nFrom: <<<@>>>\nDate: not a date\n\n",
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(MIME, st.binary(max_size=2000))
def test_broken_mime_is_read_without_raising(head: bytes, rest: bytes) -> None:
    raw = head + rest
    shown = view(raw, "/part?n={n}")
    for part in shown.parts:
        part_bytes(raw, part.index)


@pytest.mark.parametrize(
    "value",
    [
        "bob@example.test\r\nBcc: victim@example.test",
        "bob@example.test\nX: y",
        "bob@example.test\rX: y",
        "bob@example.test\x00",
        "bob@example.test\x0b",
    ],
)
def test_a_control_character_in_any_header_field_refuses(value: str) -> None:
    with pytest.raises(BadMessage):
        parse_recipients("To", value)
    for field in ("to", "cc", "bcc", "subject"):
        draft = Draft(to="bob@example.test", subject="hi")
        setattr(draft, field, value)
        with pytest.raises(BadMessage):
            recipients(draft)
            build(draft, "alice@example.test")


@pytest.mark.parametrize(
    "value", ["not an address", "bob", "@example.test", "bob@", "a b@example.test", "<>"]
)
def test_what_is_not_an_address_refuses(value: str) -> None:
    with pytest.raises(BadMessage):
        parse_recipients("To", value)


def test_the_message_sent_is_from_the_account() -> None:
    draft = Draft(
        to="Bob <bob@example.test>, carol@example.test",
        bcc="dave@example.test",
        subject="Plan für Montag",
        text="See attached.\r\nBye\n",
        attachments=[Attachment("plan <v2>.txt", "text/plain", b"step 1\n")],
        in_reply_to="<orig@example.test>",
        references="<first@example.test> junk <orig@example.test>",
    )
    assert recipients(draft) == ["bob@example.test", "carol@example.test", "dave@example.test"]
    raw = build(draft, "alice@example.test", when=1_732_530_000)
    assert b"\r\n" not in raw  # stored form: LF line ends
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"] == "alice@example.test" and "Bcc" not in msg
    assert msg["Subject"] == "Plan für Montag"
    assert msg["In-Reply-To"] == "<orig@example.test>"
    assert msg["References"].split() == [
        "<first@example.test>",
        "<orig@example.test>",
        "<orig@example.test>",
    ]
    assert msg["Message-ID"].endswith("@example.test>")
    (part,) = list(msg.iter_attachments())
    assert part.get_filename() == "plan <v2>.txt" and part.get_content() == "step 1\n"


def test_a_multipart_or_message_type_upload_is_sent_as_bytes() -> None:
    draft = Draft(
        to="bob@example.test",
        attachments=[Attachment("x.eml", "message/rfc822", b"not a message")],
    )
    msg = email.message_from_bytes(build(draft, "alice@example.test"), policy=email.policy.default)
    (part,) = list(msg.iter_attachments())
    assert part.get_content_type() == "application/octet-stream"
