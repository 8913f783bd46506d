"""Report texts in qmail-remote's wording (REMOTE-13, -14, -16, -21, -30, -32..34, -44, -46)."""

from __future__ import annotations

from services.remote import report

IP = "192.0.2.25"


def test_remote_30_every_report_after_a_reply_ends_with_what_the_host_said() -> None:
    assert report.greeting_failed(IP, [b"554 go away"]) == (
        "Connected to 192.0.2.25 but greeting failed.\nRemote host said: 554 go away\n"
    )
    assert report.name_rejected(IP, [b"550 no"]) == (
        "Connected to 192.0.2.25 but my name was rejected.\nRemote host said: 550 no\n"
    )
    assert report.sender_rejected(IP, [b"553 sender"]) == (
        "Connected to 192.0.2.25 but sender was rejected.\nRemote host said: 553 sender\n"
    )
    assert report.data_failed(IP, [b"451 later"]) == (
        "192.0.2.25 failed on DATA command.\nRemote host said: 451 later\n"
    )
    assert report.message_failed(IP, [b"552 too much"]) == (
        "192.0.2.25 failed after I sent the message.\nRemote host said: 552 too much\n"
    )
    assert report.accepted(IP, [b"250 ok 1 qp 2"]) == (
        "Connected to 192.0.2.25 accepted message.\nRemote host said: 250 ok 1 qp 2\n"
    )


def test_remote_30_all_reply_lines_crs_removed_nul_as_question_mark() -> None:
    said = report.remote_said([b"550-first\r", b"550-nul\0here", b"550 last"])
    assert said == "Remote host said: 550-first\n550-nul?here\n550 last\n"


def test_remote_30_reply_text_is_cut_at_5000_bytes() -> None:
    said = report.remote_said([b"550 " + b"x" * 6000])
    assert len(said.removeprefix("Remote host said: ").encode()) == 5000


def test_remote_32_rejected_recipient_combines_its_text_with_giving_up() -> None:
    text = report.combined(
        report.recipient_rejected(IP, [b"550 no such user"]), report.giving_up(IP)
    )
    assert text == (
        "192.0.2.25 does not like recipient.\nRemote host said: 550 no such user\n"
        "Giving up on 192.0.2.25.\n"
    )


def test_remote_33_connection_died_and_possible_duplicate() -> None:
    assert report.connection_died(IP, possible_duplicate=False) == (
        "Connected to 192.0.2.25 but connection died. (#4.4.2)\n"
    )
    assert report.connection_died(IP, possible_duplicate=True) == (
        "Connected to 192.0.2.25 but connection died. Possible duplicate! (#4.4.2)\n"
    )


def test_remote_13_14_16_21_34_44_46_fixed_texts() -> None:
    assert report.DNS_TEMPORARY == "Sorry, I couldn't find any host by that name. (#4.1.2)\n"
    assert report.no_host("nx.test") == "Sorry, I couldn't find any host named nx.test. (#5.1.2)\n"
    assert report.NO_ADDRESS == "Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n"
    assert report.NULL_MX == "Domain does not accept mail (null MX). (#5.1.10)\n"
    assert report.AMBIGUOUS_MX == (
        "Sorry. Although I'm listed as a best-preference MX or A for that host, it isn't in "
        "my control/locals file, so I don't treat it as local. (#5.4.6)\n"
    )
    assert report.NO_CONNECTION == (
        "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
    )
    assert report.CONTROLS == "Unable to read control files. (#4.3.0)\n"
    assert report.MESSAGE_UNREADABLE == "Unable to read message. (#4.3.0)\n"
    assert report.TOO_BIG == "Message is too big for the remote host. (#5.3.4)\n"
    assert report.NO_SMTPUTF8 == "Remote host does not support SMTPUTF8. (#5.6.7)\n"
    assert report.NO_QMTP_CONNECTION == (
        "Sorry, I wasn't able to establish a QMTP connection. (#4.4.1)\n"
    )
