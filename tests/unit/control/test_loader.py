"""Loading a control directory: defaults, ``me`` fallbacks, env overrides, errors (spec 2)."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import pytest

from qmesh.control import ControlError, inspect_controls, load_controls


def write(d: Path, name: str, text: str | bytes) -> Path:
    path = d / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_ctl02_me_first_line_without_trailing_whitespace(control_dir: Path) -> None:
    write(control_dir, "me", "mx.example.test \t\nignored\n")
    assert load_controls(control_dir, {}).me == "mx.example.test"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("databytes", "1000 bytes\n", 1000),  # CTL-03 prefix
        ("databytes", "abc\n", 52428800),  # CTL-03 garbage keeps the default
        ("databytes", "0\n", 0),  # an operator's 0 still means no limit (SMTPD-55)
        ("maxconnip", "0\n", 0),  # no per-client limit
        ("timeoutdata", "0\n", 1),
        ("timeoutsession", "0\n", 1),
        ("timeoutsmtpd", "30\n", 30),
        ("timeoutsmtpd", "0\n", 1),  # spec 2.2: values <= 0 mean 1
        ("concurrencyremote", "junk\n", 20),
        ("queuelifetime", "3600 one hour\n", 3600),
        ("maxrcpt", "\n", 1000),
    ],
)
def test_ctl03_numeric_controls(control_dir: Path, name: str, text: str, expected: int) -> None:
    write(control_dir, name, text)
    assert getattr(load_controls(control_dir, {}), name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("timeoutsmtpd", 300),  # hardening #7: qmail's 1200 is too kind for a public server
        ("databytes", 52428800),  # hardening #6: 50 MiB, not qmail's unlimited
        ("maxconnip", 20),  # hardening #7 (SMTPD-73)
        ("timeoutdata", 1200),
        ("timeoutsession", 3600),
        ("queuelifetime", 604800),
        ("concurrencylocal", 10),
        ("concurrencyremote", 20),
        ("timeoutremote", 1200),
        ("timeoutconnect", 60),
        ("maxrcpt", 1000),
        ("bouncemaxbytes", 0),
        ("spawnlimit", 120),
        ("bouncefrom", "MAILER-DAEMON"),
        ("doublebounceto", "postmaster"),
        ("bounceformat", "dsn"),
        ("rcptcheck", True),
        ("programdelivery", False),
        ("pop3plaintext", False),
        ("defaultdelivery", "./Maildir/\n"),
        ("smtpauth", ("PLAIN", "LOGIN")),
        ("submissionports", (587, 465)),
        ("ipme", ("0.0.0.0", "127.0.0.1")),
        ("rcpthosts", None),  # missing, not empty: SMTPD-42 tells them apart
        ("badmailfrom", frozenset()),
        ("relayclients", ()),
        ("proxyclients", ()),  # PROXY protocol off
        ("tlscert", None),
        ("smtproutes", ()),
    ],
)
def test_missing_file_means_the_default(control_dir: Path, name: str, expected: object) -> None:
    controls = load_controls(control_dir, {})
    assert getattr(controls, name) == expected
    assert controls.source(name) == "default"


MEOR = [
    ("smtpgreeting", None),
    ("localiphost", None),
    ("helohost", None),
    ("envnoathost", "envnoathost"),
    ("bouncehost", "bouncehost"),
    ("doublebouncehost", "doublebouncehost"),
    ("defaultdomain", "defaultdomain"),
    ("defaulthost", "defaulthost"),
    ("plusdomain", "plusdomain"),
    ("idhost", "idhost"),
]


@pytest.mark.parametrize(("name", "literal"), MEOR)
def test_me_fallbacks(control_dir: Path, name: str, literal: str | None) -> None:
    """Spec 2.2 "default ``me``": the value of me, else the literal (or nothing)."""
    assert getattr(load_controls(control_dir, {}), name) == literal
    write(control_dir, "me", "mx.example.test\n")
    assert getattr(load_controls(control_dir, {}), name) == "mx.example.test"
    write(control_dir, name, "other.test\n")
    assert getattr(load_controls(control_dir, {}), name) == "other.test"


def test_me_or_helper(control_dir: Path) -> None:
    assert load_controls(control_dir, {}).me_or("x") == "x"
    write(control_dir, "me", "mx.example.test\n")
    assert load_controls(control_dir, {}).me_or("x") == "mx.example.test"


def test_send16_canonical_local_domain(control_dir: Path) -> None:
    assert load_controls(control_dir, {}).canonical_local_domain() is None
    write(control_dir, "me", "MX.Example.TEST\n")
    controls = load_controls(control_dir, {})
    assert controls.locals == ("MX.Example.TEST",)  # locals defaults to me
    assert controls.canonical_local_domain() == "mx.example.test"
    write(control_dir, "locals", "# canonical first\nExample.test\nmx.example.test\n")
    controls = load_controls(control_dir, {})
    assert controls.locals == ("Example.test", "mx.example.test")  # order and case kept
    assert controls.canonical_local_domain() == "example.test"


def test_smtpd42_rcpthosts_missing_empty_and_morercpthosts(control_dir: Path) -> None:
    write(control_dir, "morercpthosts", "more.test\n")
    controls = load_controls(control_dir, {})
    assert controls.rcpthosts is None
    assert controls.rcpthosts_with_more() is None  # morercpthosts only counts with rcpthosts
    write(control_dir, "rcpthosts", "# nothing yet\n")
    controls = load_controls(control_dir, {})
    assert controls.rcpthosts == frozenset()
    assert controls.rcpthosts_with_more() == frozenset({"more.test"})
    write(control_dir, "rcpthosts", "Example.TEST\n.Sub.test\n")
    assert load_controls(control_dir, {}).rcpthosts == frozenset({"example.test", ".sub.test"})


def test_bounce11_empty_doublebounceto_is_allowed(control_dir: Path) -> None:
    write(control_dir, "doublebounceto", "\n")
    assert load_controls(control_dir, {}).doublebounceto == ""


def test_env_overrides(control_dir: Path) -> None:
    """Spec 2.3: DATABYTES and the QMAIL* variables of the inject controls override files."""
    write(control_dir, "me", "mx.example.test\n")
    write(control_dir, "databytes", "1000\n")
    env = {
        "DATABYTES": "5000",
        "QMAILDEFAULTDOMAIN": "dd.test",
        "QMAILDEFAULTHOST": "dh.test",
        "QMAILPLUSDOMAIN": "pd.test",
        "QMAILIDHOST": "id.test",
        "QMAILHOST": "not-a-control.test",
    }
    controls = load_controls(control_dir, env)
    assert controls.databytes == 5000
    assert (controls.defaultdomain, controls.defaulthost) == ("dd.test", "dh.test")
    assert (controls.plusdomain, controls.idhost) == ("pd.test", "id.test")
    assert controls.source("databytes") == "env"
    assert controls.source("me") == "file"
    assert controls.source("helohost") == "default"


@pytest.mark.parametrize("value", ["lots", "2e+06", "12abc"])
def test_bad_databytes_variable_stops_startup(control_dir: Path, value: str) -> None:
    """chart #3: the chart rendered DATABYTES as "2e+06", which was read as 2."""
    with pytest.raises(
        ControlError, match=re.escape(f"DATABYTES={value!r} is not a number")
    ) as info:
        load_controls(control_dir, {"DATABYTES": value})
    assert info.value.control == "databytes"


def test_a_float_in_a_numeric_control_stops_startup(control_dir: Path) -> None:
    """chart #3: ``databytes`` written as 2e+06 is refused, not read as 2 (STYLE section 7)."""
    write(control_dir, "databytes", "2e+06\n")
    with pytest.raises(ControlError, match=r"control/databytes line 1: '2e\+06' is not a whole"):
        load_controls(control_dir, {})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_ctl06_unreadable_file_names_it(control_dir: Path) -> None:
    write(control_dir, "rcpthosts", "example.test\n").chmod(0)
    with pytest.raises(ControlError, match=r"control/rcpthosts: cannot be read") as info:
        load_controls(control_dir, {})
    assert info.value.control == "rcpthosts"


def test_ctl06_symlink_loop_is_unreadable_not_missing(control_dir: Path) -> None:
    (control_dir / "rcpthosts").symlink_to("rcpthosts")
    with pytest.raises(ControlError, match=r"control/rcpthosts: cannot be read: Too many"):
        load_controls(control_dir, {})


def test_ctl06_fifo_in_place_of_a_file(control_dir: Path) -> None:
    os.mkfifo(control_dir / "me")
    with pytest.raises(ControlError, match=r"control/me: is not a regular file"):
        load_controls(control_dir, {})


def test_ctl06_directory_in_place_of_a_file(control_dir: Path) -> None:
    (control_dir / "locals").mkdir()
    with pytest.raises(ControlError, match=r"control/locals: is a directory") as info:
        load_controls(control_dir, {})
    assert info.value.control == "locals"


def test_ctl06_invalid_utf8_names_file_and_line(control_dir: Path) -> None:
    write(control_dir, "rcpthosts", b"example.test\nbad\xff.test\n")
    with pytest.raises(ControlError, match=r"control/rcpthosts line 2: is not valid UTF-8"):
        load_controls(control_dir, {})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bounceformat", "html\n", r"control/bounceformat line 1: expected one of dsn, qsbmf"),
        ("rcptcheck", "yes\n", r"control/rcptcheck line 1: expected 0 or 1"),
        ("programdelivery", "on\n", r"control/programdelivery line 1"),
        ("pop3plaintext", "\n", r"control/pop3plaintext line 1"),
        ("relayclients", "127.0.0.1\nlocalhost\n", r"control/relayclients line 2"),
        ("proxyclients", "10.0.0.0/40\n", r"control/proxyclients line 1"),
        ("virtualdomains", "virt.test:carol\nvirt2.test\n", r"control/virtualdomains line 2"),
        ("smtproutes", "sink.test\n", r"control/smtproutes line 1: no ':'"),
        ("qmtproutes", "# c\nsink.test\n", r"control/qmtproutes line 2"),
        ("ipme", "mx.test\n", r"control/ipme line 1"),
        ("me", "\nmx.test\n", r"control/me line 1: the first line is empty"),
        ("tlscert", "\n", r"control/tlscert line 1: neither PEM data nor the name"),
    ],
)
def test_closed_set_controls_reject_bad_values(
    control_dir: Path, name: str, text: str, message: str
) -> None:
    write(control_dir, name, text)
    with pytest.raises(ControlError, match=message) as info:
        load_controls(control_dir, {})
    assert info.value.control == name


def test_bounceformat_and_flags(control_dir: Path) -> None:
    write(control_dir, "bounceformat", "QSBMF\n")
    write(control_dir, "programdelivery", "1\n")
    write(control_dir, "rcptcheck", "0\n")
    controls = load_controls(control_dir, {})
    assert controls.bounceformat == "qsbmf"
    assert controls.programdelivery is True
    assert controls.rcptcheck is False


def test_lists_keep_what_is_written(control_dir: Path) -> None:
    write(control_dir, "virtualdomains", "# v\nvirt.example.test:carol\n:catchall\n")
    write(control_dir, "smtproutes", "sink.test:smtp-sink:2626\n.corp.test:\n")
    write(control_dir, "relayclients", "127.0.0.0/8\n10.0.0.0/8:+ext\n")
    write(control_dir, "proxyclients", "10.1.0.0/16\n")
    write(control_dir, "badmailfrom", "Spammer@Bad.test\n@evil.test\n")
    write(control_dir, "defaultdelivery", "./Maildir/\n&copy@example.test\n")
    controls = load_controls(control_dir, {})
    assert controls.virtualdomains == (("virt.example.test", "carol"), ("", "catchall"))
    assert controls.smtproutes == (("sink.test", "smtp-sink:2626"), (".corp.test", ""))
    net = ipaddress.ip_network
    assert controls.relayclients == ((net("127.0.0.0/8"), ""), (net("10.0.0.0/8"), "+ext"))
    assert controls.proxyclients == (net("10.1.0.0/16"),)
    assert controls.badmailfrom == {"spammer@bad.test", "@evil.test"}
    assert controls.defaultdelivery == "./Maildir/\n&copy@example.test\n"


def test_ipme_file_replaces_interface_addresses(control_dir: Path) -> None:
    interfaces = ["10.42.0.7"]
    assert load_controls(control_dir, {}).own_addresses(interfaces) == {
        "0.0.0.0",
        "127.0.0.1",
        "10.42.0.7",
    }
    write(control_dir, "ipme", "203.0.113.5\n")
    assert load_controls(control_dir, {}).own_addresses(interfaces) == {"203.0.113.5"}


PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def test_tls_inline_pem_or_named_file(control_dir: Path, tmp_path: Path) -> None:
    write(control_dir, "tlscert", PEM_CERT)
    write(control_dir, "tlskey", PEM_KEY)
    controls = load_controls(control_dir, {})
    assert controls.tlscert == control_dir / "tlscert"
    assert controls.tlskey == control_dir / "tlskey"
    secret = write(tmp_path, "tls.key", PEM_KEY)
    write(control_dir, "tlskey", f"{secret}\n")
    write(control_dir, "cert.pem", PEM_CERT)
    write(control_dir, "tlscert", "cert.pem\n")
    controls = load_controls(control_dir, {})
    assert controls.tlskey == secret
    assert controls.tlscert == control_dir / "cert.pem"


def test_tls_files_not_mounted_do_not_stop_services_that_do_not_serve_tls(
    control_dir: Path, tmp_path: Path
) -> None:
    """chart #1: send, local, remote, the setup Job and the admin pod read the control
    directory with tlscert/tlskey naming a Secret mounted only in smtpd and pop3d; they
    stopped with "not a readable file". The names are kept; smtpd and pop3d open them."""
    absent = tmp_path / "not-mounted"
    write(control_dir, "tlscert", f"{absent}/tls.crt\n")
    write(control_dir, "tlskey", f"{absent}/tls.key\n")
    controls = load_controls(control_dir, {})
    assert (controls.tlscert, controls.tlskey) == (absent / "tls.crt", absent / "tls.key")


def test_tls_cert_without_key_is_an_error(control_dir: Path) -> None:
    write(control_dir, "tlscert", PEM_CERT)
    with pytest.raises(ControlError, match=r"control/tlskey: is missing, but tlscert is set"):
        load_controls(control_dir, {})


def test_missing_control_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match=r"control directory: .* does not exist"):
        load_controls(tmp_path / "nowhere", {})


def test_inspection_reports_every_error_and_unknown_files(control_dir: Path) -> None:
    write(control_dir, "bounceformat", "html\n")
    write(control_dir, "rcptcheck", "maybe\n")
    write(control_dir, "rcpthost", "typo.test\n")
    write(control_dir, "databytes", "1000\n")
    inspection = inspect_controls(control_dir, {})
    assert {err.control for err in inspection.errors} == {"bounceformat", "rcptcheck"}
    assert inspection.unknown == ("rcpthost",)
    assert inspection.controls.databytes == 1000


def test_configmap_layout_reads_one_version(control_dir: Path) -> None:
    """Kubernetes mounts a ConfigMap as ``name -> ..data/name`` with ``..data`` a symlink."""
    version = control_dir / "..2024_01_01_00_00_00.1"
    version.mkdir()
    write(version, "me", "mx.example.test\n")
    write(version, "databytes", "2048\n")
    (control_dir / "..data").symlink_to(version.name)
    for name in ("me", "databytes"):
        (control_dir / name).symlink_to(f"..data/{name}")
    inspection = inspect_controls(control_dir, {})
    assert inspection.errors == ()
    assert inspection.unknown == ()
    assert (inspection.controls.me, inspection.controls.databytes) == ("mx.example.test", 2048)
