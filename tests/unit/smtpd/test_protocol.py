"""SMTP command syntax: SMTPD-10, -11, -14, -31..34, -47, -56, -85."""

from __future__ import annotations

import pytest

from services.smtpd.protocol import (
    BAD_PARAM,
    BAD_RECIPIENT,
    BAD_SENDER,
    NON_ASCII,
    SYNTAX,
    TOO_LONG,
    Command,
    PathError,
    check_ascii,
    mail_params,
    parse_command,
    parse_path,
)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"MAIL FROM:<a@b>\r\n", Command("MAIL", "FROM:<a@b>")),
        (b"mail   FROM:<a@b>\n", Command("MAIL", "FROM:<a@b>")),  # SMTPD-10 bare LF, -11
        (b"NoOp\r\n", Command("NOOP", "")),
        (b"HELO x\r\r\n", Command("HELO", "x\r")),  # only one CR is removed
        (b"RCPT TO:<a\0b@c>\r\n", Command("RCPT", "TO:<a\0b@c>", has_nul=True)),  # SMTPD-14
    ],
)
def test_smtpd_10_11_14_command_lines(line: bytes, command: Command) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("arg", "address", "params"),
    [
        ("FROM:<joe@far.test>", "joe@far.test", {}),
        (
            "from: <joe@far.test> SIZE=100 BODY=8BITMIME",
            "joe@far.test",
            {"SIZE": "100", "BODY": "8BITMIME"},
        ),
        ("FROM:<>", "", {}),  # SMTPD-34
        ("FROM: <>", "", {}),
        ("FROM:joe@far.test SIZE=5", "joe@far.test", {"SIZE": "5"}),  # no angle brackets
        ("FROM:<@relay.test,@b.test:joe@far.test>", "joe@far.test", {}),  # source route
        ('FROM:<"john smith"@far.test>', "john smith@far.test", {}),  # quotes removed
        ('FROM:<"a\\"b"@far.test>', 'a"b@far.test', {}),  # backslash
        ('FROM:<"a>b"@far.test>', "a>b@far.test", {}),  # > inside quotes
        ("FROM:<joe@far.test", "joe@far.test", {}),  # no > : the rest
        ("FROM:<joe@far.test> smtputf8", "joe@far.test", {"SMTPUTF8": None}),
    ],
)
def test_smtpd_31_33_34_address_extraction(arg: str, address: str, params: dict[str, str]) -> None:
    path = parse_path(arg, "FROM:")
    assert (path.address, path.params) == (address, params)


@pytest.mark.parametrize("arg", ["<joe@far.test>", "FRM:<joe@far.test>", "TO:<joe@far.test>"])
def test_smtpd_31_keyword_is_required(arg: str) -> None:
    with pytest.raises(PathError) as err:
        parse_path(arg, "FROM:")
    assert err.value.reply == SYNTAX


@pytest.mark.parametrize(
    "path",
    [
        "<a\rb@far.test>",  # a bare CR: Return-Path would end there
        '<"a\rReturn-Path: <x@y>"@far.test>',  # quoted
        "<a\\\rb@far.test>",  # backslash-escaped
        "<a\tb@far.test>",
        "<ab@far\x0b.test>",
        "<ab@far.test\x7f>",
        "<a\x85b@far.test>",  # a C1 control, valid UTF-8 (U+0085)
        "a\x1bb@far.test",  # without brackets
    ],
)
def test_smtpd_31_control_characters_in_paths_are_refused(path: str) -> None:
    """hardening #4: no control character in a MAIL or RCPT path, quoted or not."""
    with pytest.raises(PathError) as err:
        parse_path("FROM:" + path, "FROM:")
    assert err.value.reply == BAD_SENDER == "501 5.1.7 bad sender address syntax"
    with pytest.raises(PathError) as err:
        parse_path("TO:" + path, "TO:")
    assert err.value.reply == BAD_RECIPIENT == "501 5.1.3 bad recipient address syntax"


def test_smtpd_32_address_over_900_bytes() -> None:
    parse_path("TO:<" + "a" * 890 + "@b.test>", "TO:")  # 897 bytes: fine
    with pytest.raises(PathError) as err:
        parse_path("TO:<" + "a" * 900 + "@b.test>", "TO:")
    assert err.value.reply == TOO_LONG and err.value.reply.startswith("555 ")


@pytest.mark.parametrize(
    ("params", "extended", "databytes", "outcome"),
    [
        ({}, False, 0, (None, False)),
        ({"SIZE": "1000"}, True, 1000, (1000, False)),
        ({"SIZE": "1001"}, True, 1000, "552 5.3.4 message size exceeds fixed maximum message size"),
        ({"SIZE": "1001"}, True, 0, (1001, False)),  # no limit
        ({"SIZE": "ten"}, True, 0, SYNTAX),
        ({"BODY": "8BITMIME", "AUTH": "<>"}, True, 0, (None, False)),
        ({"BODY": "BINARYMIME"}, True, 0, BAD_PARAM),
        ({"SMTPUTF8": None}, True, 0, (None, True)),
        ({"SIZE": "10"}, False, 0, BAD_PARAM),  # any parameter after HELO
        ({"RET": "FULL"}, True, 0, BAD_PARAM),  # DSN is not offered
    ],
)
def test_smtpd_33_56_84_mail_parameters(
    params: dict[str, str | None], extended: bool, databytes: int, outcome: object
) -> None:
    if isinstance(outcome, str):
        with pytest.raises(PathError) as err:
            mail_params(params, extended=extended, databytes=databytes)
        assert err.value.reply == outcome
    else:
        assert mail_params(params, extended=extended, databytes=databytes) == outcome


def test_smtpd_85_non_ascii_needs_smtputf8() -> None:
    check_ascii("joe@far.test", False)
    check_ascii("jöe@färn.test", True)
    with pytest.raises(PathError) as err:
        check_ascii("jöe@far.test", False)
    assert err.value.reply == NON_ASCII
    invalid = b"j\xffe@far.test".decode("utf-8", "surrogateescape")
    with pytest.raises(PathError):
        check_ascii(invalid, True)
