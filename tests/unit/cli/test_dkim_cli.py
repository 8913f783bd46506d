"""qmesh dkim keygen / activate: key files, the selector file, the printed record (issue 11)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from qmesh.cli.main import main
from qmesh.dkim.keyring import load_keyring


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QMESH_CONTROL", str(tmp_path))
    return tmp_path


def test_keygen_writes_the_key_and_prints_the_record(control: Path, capsys) -> None:
    assert main(["dkim", "keygen", "Example.TEST", "--selector", "s1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('s1._domainkey.example.test. IN TXT ( "v=DKIM1; k=rsa; p=')
    path = control / "domainkeys" / "example.test" / "s1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = "".join(re.findall(r'"([^"]*)"', out))
    keys = load_keyring(control)["example.test"]
    assert keys.active == ("s1",)
    assert keys.keys["s1"].record() == record


def test_rotation_adds_then_activates(control: Path, capsys) -> None:
    assert main(["dkim", "keygen", "example.test", "--selector", "old"]) == 0
    assert (
        main(["dkim", "keygen", "example.test", "--selector", "ed", "--algorithm", "ed25519"]) == 0
    )
    assert main(["dkim", "keygen", "example.test", "--selector", "new"]) == 0
    err = capsys.readouterr().err
    assert "not active yet" in err
    assert load_keyring(control)["example.test"].active == ("old", "ed")
    assert main(["dkim", "activate", "example.test", "new"]) == 0
    keys = load_keyring(control)["example.test"]
    assert keys.active == ("ed", "new")
    assert "old" in keys.keys  # kept, publishable


@pytest.mark.parametrize(
    "argv",
    [
        ["dkim", "keygen", "bad_domain!", "--selector", "s1"],
        ["dkim", "keygen", "example.test", "--selector", "../x"],
        ["dkim", "keygen", "example.test", "--selector", "selector"],
        ["dkim", "activate", "example.test", "missing"],
    ],
)
def test_bad_input_is_refused(control: Path, argv: list[str], capsys) -> None:
    assert main(argv) == 1
    assert capsys.readouterr().err.startswith("qmesh dkim: ")


def test_an_existing_key_is_never_replaced(control: Path, capsys) -> None:
    assert main(["dkim", "keygen", "example.test", "--selector", "s1"]) == 0
    before = (control / "domainkeys" / "example.test" / "s1").read_bytes()
    assert main(["dkim", "keygen", "example.test", "--selector", "s1"]) == 1
    assert (control / "domainkeys" / "example.test" / "s1").read_bytes() == before
