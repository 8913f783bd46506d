"""Rule lines in .qmail format (LOCAL-15, LOCAL-16, LOCAL-57, LOCAL-61)."""

from __future__ import annotations

import pytest

from services.local.dotqmail import (
    BLANK_FIRST_LINE,
    FORWARD_ONLY_FILE,
    FORWARD_ONLY_PROG,
    Broken,
    Forward,
    Instruction,
    Maildir,
    Mbox,
    Program,
    parse_rule,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("./Maildir/", [Maildir(0, "./Maildir/", "INBOX")]),
        ("./Maildir/\n", [Maildir(0, "./Maildir/", "INBOX")]),
        ("./Maildir/ \t\n", [Maildir(0, "./Maildir/", "INBOX")]),  # trailing blanks removed
        ("&bob@example.test\n", [Forward(0, "bob@example.test")]),
        ("bob@example.test\n", [Forward(0, "bob@example.test")]),
        ("9bob@example.test\n", [Forward(0, "9bob@example.test")]),
        ("|exit 100\n", [Program(0, "exit 100")]),
        ("| cat > x \n", [Program(0, " cat > x")]),
        ("./mbox\n", [Mbox(0, "./mbox", "mbox")]),
        ("# only a comment\n", []),  # discards the message
        ("#\n#\n", []),
        ("+other\n./Maildir/\n", [Maildir(1, "./Maildir/", "INBOX")]),  # other + lines ignored
        (
            "# comment\n./Maildir/\n\n&a@b.test\n|true\n",
            [
                Maildir(1, "./Maildir/", "INBOX"),
                Forward(3, "a@b.test"),
                Program(4, "true"),
            ],
        ),
        ("\n./Maildir/\n", [Broken(0, BLANK_FIRST_LINE)]),
        ("  \n", [Broken(0, BLANK_FIRST_LINE)]),
        ("", [Broken(0, BLANK_FIRST_LINE)]),
    ],
)
def test_lines(text: str, expected: list[Instruction]) -> None:
    """LOCAL-16: split at LF, trailing blanks removed, then by first character."""
    assert list(parse_rule(text)) == expected


@pytest.mark.parametrize(
    ("path", "folder"),
    [
        ("./Maildir/", "INBOX"),
        ("./Maildir/./", "INBOX"),
        ("./Maildir/.Lists.qmail/", "Lists.qmail"),
        ("./Maildir/.Spam/", "Spam"),
        ("./Mail/spam/", "Mail.spam"),
        ("./Maildir/.Work/.Clients/", "Work.Clients"),
        ("./Other/", "Other"),
    ],
)
def test_maildir_line_names_a_folder(path: str, folder: str) -> None:
    """LOCAL-61: ./Maildir/ is INBOX, anything else a Maildir++ subfolder name."""
    assert parse_rule(path) == (Maildir(0, path, folder),)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/var/mail/bob/", "Unable to open /var/mail/bob/: outside home. (#4.2.1)"),
        ("./../alice/Maildir/", "Unable to open ./../alice/Maildir/: outside home. (#4.2.1)"),
        ("./Maildir/../../x/", "Unable to open ./Maildir/../../x/: outside home. (#4.2.1)"),
        ("/etc/passwd", "Unable to open /etc/passwd: outside home. (#4.2.1)"),
        ("./Maildir/.INBOX/", "Unable to open ./Maildir/.INBOX/: invalid folder name. (#4.2.1)"),
        ("./inbox/", "Unable to open ./inbox/: invalid folder name. (#4.2.1)"),
        ("./", "Unable to open ./: invalid folder name. (#4.2.1)"),
        ("./Mail/sp am/", "Unable to open ./Mail/sp am/: invalid folder name. (#4.2.1)"),
    ],
)
def test_file_line_outside_the_account_is_temporary(path: str, text: str) -> None:
    """LOCAL-24, LOCAL-61: Z with qmail's wording, at the line's place."""
    assert parse_rule(path) == (Broken(0, text),)


def test_forward_only_makes_later_file_and_program_lines_fail() -> None:
    """LOCAL-15: after +list, file and program lines are Z 4.7.0; forwards still go."""
    text = "./Maildir/\n+list\n&a@b.test\n./Maildir/\n|true\n"
    assert parse_rule(text) == (
        Maildir(0, "./Maildir/", "INBOX"),
        Forward(2, "a@b.test"),
        Broken(3, FORWARD_ONLY_FILE),
        Broken(4, FORWARD_ONLY_PROG),
    )


@pytest.mark.parametrize("line", ["./Maildir/", "./mbox", "/var/mail/x"])
def test_domain_rules_have_no_mailbox(line: str) -> None:
    """LOCAL-57: a file line in a domain rule is Z 4.2.1."""
    text = f"Unable to open {line}: domain rules have no mailbox. (#4.2.1)"
    assert parse_rule(line, mailbox=False) == (Broken(0, text),)


def test_domain_rules_forward_and_run_programs() -> None:
    assert parse_rule("&a@b.test\n|true\n", mailbox=False) == (
        Forward(0, "a@b.test"),
        Program(1, "true"),
    )


@pytest.mark.parametrize(
    "line",
    [
        "&bob",  # not complete
        "&bob@localhost",  # not an fqdn
        "&bob smith@example.test",  # spaces
        "&<bob@example.test>",  # brackets
        "&bob@example.test (Bob)",  # comment
        "&",
        "_bob@example.test",  # a bare address must start with a letter or digit
        '"bob"@example.test',
    ],
)
def test_bad_forward_address_is_temporary(line: str) -> None:
    """LOCAL-16: forward addresses are complete user@fqdn; a bad one fails where it stands."""
    [instruction] = parse_rule("./Maildir/\n" + line)[1:]
    assert isinstance(instruction, Broken)
    assert instruction.index == 1
    assert instruction.text.endswith("(#4.2.1)")
