"""Object keys and Maildir names (ARCHITECTURE 4-5, LOCAL-24, LOCAL-60, ARCH-11, POP3-11, POP3-14).

Every adapter refuses the same keys, so a key that works on the laptop works on S3 and one that
could climb out of a bucket directory works nowhere.
"""

from __future__ import annotations

import pytest

from qmesh.contract.ids import QueueId
from qmesh.store.keys import BadKey, body_key, check_key, mailbox_key, mailbox_prefix
from qmesh.store.maildir import MaildirEntry, parse_entry, pop3_size, unique_name

QID = QueueId("1732510000123.0123456789abcdef")
UNIQUE = "1732510000.M123Q0123456789abcdefR0I0.qmesh,W=5"

GOOD_KEYS = [
    "mess/1732510000123.0123456789abcdef",
    "a",
    "example.test/alice/INBOX/new/" + UNIQUE,
    "example.test/alice/INBOX/cur/" + UNIQUE + ":2,S",
    "a/.staging/b",  # a leading dot is a name like any other
    "a/x..y/b",
    "xn--bcher-kva.test/b",
    "é/ü",
    "k" * 900,
]
BAD_KEYS = [
    "",
    "a//b",
    "/a",
    "a/",
    ".",
    "..",
    "../x",
    "a/../b",
    "a/..",
    "a/./b",
    "a\\b",
    "..\\x",
    "a\x00b",
    "a\nb",
    "a\tb",
    "a b",
    "a\x7fb",
    "k" * 901,
    "é" * 451,  # 902 bytes of UTF-8
]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_check_key_accepts(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", BAD_KEYS)
def test_check_key_refuses_empty_dot_dotdot_backslash_and_control_segments(key: str) -> None:
    with pytest.raises(BadKey):
        check_key(key)


@pytest.mark.parametrize("prefix", ["", "mess/", "a/b/ne", "example.test/alice/INBOX/"])
def test_listing_prefixes_may_be_empty_or_end_in_slash(prefix: str) -> None:
    assert check_key(prefix, prefix=True) == prefix


@pytest.mark.parametrize("prefix", ["/", "a//", "../", "a/../", "a\\/", "a /"])
def test_listing_prefixes_obey_the_segment_rules(prefix: str) -> None:
    with pytest.raises(BadKey):
        check_key(prefix, prefix=True)


def test_body_key_is_mess_slash_queue_id() -> None:
    assert body_key(QID) == "mess/1732510000123.0123456789abcdef"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "1732510000123.0123456789ABCDEF", "", "x"])
def test_body_key_takes_only_queue_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        body_key(QueueId(bad))


def test_local_60_mailbox_layout() -> None:
    assert mailbox_prefix("mx.example.test", "alice") == "mx.example.test/alice/INBOX/"
    assert mailbox_prefix("hosted.test", "bob", "Lists") == "hosted.test/bob/Lists/"
    assert (
        mailbox_key("mx.example.test", "alice", "INBOX", "new", UNIQUE)
        == f"mx.example.test/alice/INBOX/new/{UNIQUE}"
    )
    assert (
        mailbox_key("mx.example.test", "alice", "INBOX", "cur", UNIQUE + ":2,S")
        == f"mx.example.test/alice/INBOX/cur/{UNIQUE}:2,S"
    )


@pytest.mark.parametrize(
    ("domain", "account", "folder", "sub", "name"),
    [
        ("example.test", "alice", "INBOX", "junk", UNIQUE),  # not a Maildir subdirectory
        ("example.test", "..", "INBOX", "new", UNIQUE),
        ("", "alice", "INBOX", "new", UNIQUE),
        ("example.test", "alice", ".", "new", UNIQUE),
        ("example.test", "alice", "INBOX", "new", ""),
        ("example.test", "al\\ice", "INBOX", "new", UNIQUE),
    ],
)
def test_mailbox_key_refuses_bad_parts(
    domain: str, account: str, folder: str, sub: str, name: str
) -> None:
    with pytest.raises(BadKey):
        mailbox_key(domain, account, folder, sub, name)


def test_mailbox_prefix_refuses_climbing_out() -> None:
    with pytest.raises(BadKey):
        mailbox_prefix("example.test", "..")


def test_pop3_11_size_counts_a_cr_for_every_lf() -> None:
    assert pop3_size(b"") == 0
    assert pop3_size(b"abc\n") == 5
    assert pop3_size(b"a\nb\n\n") == 8


def test_local_24_unique_name_follows_the_maildir_convention_and_carries_the_size() -> None:
    assert unique_name(QID, 0, 0, b"abc\n") == UNIQUE


def test_arch_11_unique_name_is_a_function_of_id_recipient_and_instruction() -> None:
    names = {unique_name(QID, r, i, b"x\n") for r in range(3) for i in range(3)}
    assert len(names) == 9
    assert unique_name(QID, 2, 1, b"x\n") == unique_name(QID, 2, 1, b"x\n")
    other = QueueId("1732510000123.0123456789abcdee")
    assert unique_name(other, 0, 0, b"x\n") != unique_name(QID, 0, 0, b"x\n")


def test_unique_name_is_at_most_70_printable_characters_without_slash_or_colon() -> None:
    name = unique_name(QID, 99_999, 999, b"x" * 10**6)
    assert len(name) <= 70 and "/" not in name and ":" not in name
    with pytest.raises(ValueError):
        unique_name(QID, 10**30, 0, b"x")


def test_unique_name_takes_only_queue_ids() -> None:
    with pytest.raises(ValueError):
        unique_name(QueueId("../x"), 0, 0, b"x")


@pytest.mark.parametrize(
    ("tail", "entry"),
    [
        (f"new/{UNIQUE}", MaildirEntry("new", UNIQUE, "", 5)),
        (f"cur/{UNIQUE}:2,S", MaildirEntry("cur", UNIQUE, "S", 5)),
        (f"cur/{UNIQUE}:2,", MaildirEntry("cur", UNIQUE, "", 5)),
        (f"cur/{UNIQUE}:2,RS", MaildirEntry("cur", UNIQUE, "RS", 5)),
        (f"cur/{UNIQUE}:1,x", MaildirEntry("cur", UNIQUE, "", 5)),  # not the ":2," form
        ("new/1.x.host", MaildirEntry("new", "1.x.host", "", None)),  # no ",W=": size unknown
        ("new/1.x.host,W=12,S=10", MaildirEntry("new", "1.x.host,W=12,S=10", "", 12)),
        ("new/1.x.host,W=12x", MaildirEntry("new", "1.x.host,W=12x", "", None)),
    ],
)
def test_parse_entry(tail: str, entry: MaildirEntry) -> None:
    assert parse_entry(tail) == entry


@pytest.mark.parametrize(
    "tail",
    [
        f"tmp/{UNIQUE}",  # staged, not delivered (LOCAL-24)
        f"{UNIQUE}",
        "new/",
        "cur/",
        f"new/a/{UNIQUE}",
        "new/has space",
        "new/" + "x" * 71,
        "junk/x",
        "",
    ],
)
def test_parse_entry_ignores_anything_else(tail: str) -> None:
    assert parse_entry(tail) is None
