"""domainkeys/<domain>/<selector> and the selector file: which keys sign (issue 11)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qmesh.dkim.keyring import KeyringError, Keys, load_keyring
from qmesh.dkim.keys import generate

RSA_KEY = generate("rsa")
ED_KEY = generate("ed25519")


def write(control: Path, files: dict[str, bytes | str]) -> None:
    for name, data in files.items():
        path = control / "domainkeys" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)


def test_no_directory_no_keys(tmp_path: Path) -> None:
    assert load_keyring(tmp_path) == {}


def test_default_selector_signs_without_a_selector_file(tmp_path: Path) -> None:
    write(tmp_path, {"example.test/default": RSA_KEY, "example.test/old": RSA_KEY})
    ring = load_keyring(tmp_path)
    assert ring["example.test"].active == ("default",)
    assert set(ring["example.test"].keys) == {"default", "old"}


def test_without_default_or_selector_file_nothing_signs(tmp_path: Path) -> None:
    write(tmp_path, {"example.test/s1": RSA_KEY})
    assert load_keyring(tmp_path)["example.test"].signers() == []


def test_selector_file_names_one_of_each_algorithm(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "Example.TEST/rsa1": RSA_KEY,
            "Example.TEST/rsa2": RSA_KEY,
            "Example.TEST/ed1": ED_KEY,
            "Example.TEST/selector": "# the ones that sign\nrsa2\n ed1 # new\n\n",
        },
    )
    signers = load_keyring(tmp_path)["example.test"].signers()
    assert [(s.domain, s.selector, s.key.algorithm) for s in signers] == [
        ("example.test", "rsa2", "rsa"),
        ("example.test", "ed1", "ed25519"),
    ]


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"a.test/s1": RSA_KEY, "a.test/selector": "s2\n"}, "names 's2'"),
        (
            {"a.test/s1": RSA_KEY, "a.test/s2": RSA_KEY, "a.test/selector": "s1\ns2\n"},
            "more than one rsa",
        ),
        ({"a.test/s1": b"garbage", "a.test/selector": "s1\n"}, "a.test/s1"),
        ({"a.test/s1": RSA_KEY, "a.test/selector": "../../etc/passwd\n"}, "not a selector"),
        ({"a.test/s1": RSA_KEY, "a.test/selector": b"\xff\xfe"}, "cannot read"),
    ],
)
def test_bad_directories_stop_with_the_file_named(
    tmp_path: Path, files: dict[str, bytes | str], reason: str
) -> None:
    write(tmp_path, files)
    with pytest.raises(KeyringError, match=reason):
        load_keyring(tmp_path)


def test_stray_names_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, {"a.test/default": RSA_KEY, "a.test/README_txt": "notes", "..data/x": "y"})
    (tmp_path / "domainkeys" / "loose-file").write_text("x")
    ring = load_keyring(tmp_path)
    assert list(ring) == ["a.test"]
    assert set(ring["a.test"].keys) == {"default"}


def test_keys_reload_on_change_and_keep_the_old_ones_on_a_bad_change(tmp_path: Path) -> None:
    """CTL-07 for keys: a change is picked up; a broken change keeps the keys that worked."""
    write(tmp_path, {"a.test/default": RSA_KEY})
    keys = Keys(tmp_path, interval=0.0)
    assert [s.selector for s in keys.signers("A.test")] == ["default"]
    write(tmp_path, {"a.test/ed1": ED_KEY, "a.test/selector": "default\ned1\n"})
    assert [s.selector for s in keys.signers("a.test")] == ["default", "ed1"]
    write(tmp_path, {"a.test/selector": "missing\n"})
    os.utime(tmp_path / "domainkeys" / "a.test" / "selector", (1, 1))
    assert [s.selector for s in keys.signers("a.test")] == ["default", "ed1"]
    assert keys.signers("other.test") == []


def test_a_bad_key_stops_startup(tmp_path: Path) -> None:
    write(tmp_path, {"a.test/default": "-----BEGIN RSA PRIVATE KEY-----\nxx\n"})
    with pytest.raises(KeyringError, match=r"a\.test/default"):
        Keys(tmp_path)
