"""Rule texts the CLI refuses to store (LOCAL-16, LOCAL-15, LOCAL-27, LOCAL-57, LOCAL-61)."""

from __future__ import annotations

import pytest

from qmesh.directory.errors import InvalidRule
from qmesh.directory.rules import (
    FolderError,
    check_rule_text,
    forward_problem,
    maildir_folder,
    mbox_name,
    shadowing_accounts,
)

GOOD_ACCOUNT_RULES = [
    "",  # empty: the default delivery (LOCAL-14)
    "./Maildir/\n",
    "./Maildir/",  # a missing final LF is tolerated
    "./Maildir/.Lists.qmail/\n",
    "./Mail/spam/\n",
    "./mbox\n",
    "# only a comment: mail is discarded\n",
    "&alice@example.test\n",
    "alice@example.test\n",
    "bob@bücher.example\n",
    "|/usr/bin/vacation bob\n",
    "+list\n&alice@example.test\nbob@example.test\n",
    "./Maildir/   \n\n&a@b.example\t\n",  # trailing blanks removed, inner blank lines ignored
]


@pytest.mark.parametrize("text", GOOD_ACCOUNT_RULES)
def test_account_rules_accepted(text: str) -> None:
    assert check_rule_text("ext", text, domain_rule=False) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("\n./Maildir/\n", "first line is blank"),
        ("/var/mail/bob\n", "outside home"),  # LOCAL-24
        ("./Maildir/../../other/\n", "outside home"),
        ("./../x\n", "outside home"),
        ("./Maildir/INBOX/\n", "invalid folder name"),
        ("./Maildir/.inbox/\n", "invalid folder name"),
        ("./sp ace/\n", "invalid folder name"),
        ("./\n", "invalid folder name"),
        ("&alice\n", "complete user@fqdn"),
        ("&alice@localhost\n", "complete user@fqdn"),
        ("&@example.test\n", "complete user@fqdn"),
        ("&\n", "empty"),
        ("&<alice@example.test>\n", "brackets"),
        ("&alice@example.test (Alice)\n", "spaces, brackets or comments"),
        ("&alice@exa_mple.test\n", "invalid domain name"),
        ("-alice@example.test\n", "starts with a letter, digit or '&'"),
        ("|\n", "without a command"),
        ("+list\n./Maildir/\n", "file delivery after +list"),  # LOCAL-15
        ("+list\n|prog\n", "program delivery after +list"),
        ("./Maildir/\r\n", "CR"),
        ("a@b.example\0\n", "NUL"),
        ("#" * 70_000, "longer than"),
    ],
)
def test_account_rules_refused_naming_the_problem(text: str, why: str) -> None:
    with pytest.raises(InvalidRule, match=r"rule \.qmail-ext") as err:
        check_rule_text("ext", text, domain_rule=False)
    assert why in str(err.value)


def test_refusal_names_the_line() -> None:
    with pytest.raises(InvalidRule, match="line 3"):
        check_rule_text("", "# ok\n&a@b.example\n&nobody\n", domain_rule=False)


@pytest.mark.parametrize(
    "text", ["&postmaster@example.test\n", "|forward-somewhere\n", "a@b.example\n#note\n"]
)
def test_domain_rules_accepted_local57(text: str) -> None:
    assert check_rule_text("postmaster", text, domain_rule=True) == text


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("default", "", "domain rules have no mailbox"),  # LOCAL-57: empty
        ("default", "./Maildir/\n", "domain rules have no mailbox"),  # LOCAL-57: file line
        ("default", "./mbox\n", "domain rules have no mailbox"),
        ("postmaster", "", "empty"),  # LOCAL-27: never empty
        ("postmaster", "# nobody reads this\n", "must forward or deliver"),
    ],
)
def test_domain_rules_refused_local57_local27(name: str, text: str, why: str) -> None:
    with pytest.raises(InvalidRule) as err:
        check_rule_text(name, text, domain_rule=True)
    assert why in str(err.value)


def test_a_domain_rule_of_only_comments_discards_and_is_allowed() -> None:
    assert check_rule_text("spam", "# drop\n", domain_rule=True) == "# drop\n"


@pytest.mark.parametrize(
    ("path", "folder"),
    [
        ("./Maildir/", "INBOX"),
        ("Maildir/", "INBOX"),
        ("./Maildir/./", "INBOX"),
        ("./Maildir/.Lists.qmail/", "Lists.qmail"),
        ("./Maildir/.Spam/", "Spam"),
        ("./Mail/spam/", "Mail.spam"),
    ],
)
def test_maildir_folders_local61(path: str, folder: str) -> None:
    assert maildir_folder(path) == folder


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/home/bob/Maildir/", "outside home"),
        ("./Maildir/../", "outside home"),
        ("./Maildir/.INBOX/", "invalid folder name"),
        ("./Maildir/.../", "invalid folder name"),
        ("./Maildir/.a b/", "invalid folder name"),
        ("./" + "x" * 201 + "/", "invalid folder name"),
    ],
)
def test_maildir_folder_errors_carry_qmail_text_local61(path: str, problem: str) -> None:
    with pytest.raises(FolderError) as err:
        maildir_folder(path)
    assert err.value.problem == problem
    assert str(err.value) == f"Unable to open {path}: {problem}. (#4.2.1)"


def test_mbox_names_local61() -> None:
    assert mbox_name("./mbox") == "mbox"
    assert mbox_name("./Mail/.old") == "Mail.old"
    with pytest.raises(FolderError):
        mbox_name("/var/mail/bob")


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("a@b.example", True),
        ("first.last+tag@sub.example.test", True),
        ("a@b", False),
        ("a b@c.example", False),
        ("a@[127.0.0.1]", False),
        ("x" * 1000 + "@b.example", False),
    ],
)
def test_forward_addresses(address: str, ok: bool) -> None:
    assert (forward_problem(address) is None) == ok


@pytest.mark.parametrize(
    ("rule", "accounts"),
    [
        ("postmaster", ("postmaster",)),  # qmail: ~alias/.qmail-postmaster only without a user
        ("foo-bar", ("foo-bar", "foo")),  # LOCAL-03: foo-bar@ finds account foo, ext bar
        ("foo-default", ("foo",)),  # every foo-… address
        ("a-b-default", ("a-b", "a")),
        ("john:smith", ("john.smith",)),  # safeext form (LOCAL-09)
        ("default", ()),  # serves every address without an account
        ("root", ()),  # never an account (LOCAL-06)
        ("-default", ()),
    ],
)
def test_local_04_accounts_that_keep_a_domain_rule_unused(
    rule: str, accounts: tuple[str, ...]
) -> None:
    """hardening #14: the account names that receive a domain rule's mail first."""
    assert shadowing_accounts(rule) == accounts
