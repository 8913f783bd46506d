"""The registry is the one table of controls: Controls, the loader and the docs follow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmesh.control import REGISTRY, SPECS, ControlSpec, MeOr, load_controls
from qmesh.control.reference import generated_part, render_tables
from qmesh.control.registry import Default, describe_default
from qmesh.control.values import CONTROL_NAMES

DOCS = Path(__file__).resolve().parents[3] / "docs" / "controls.md"

# Spec 2.2, both tables, plus proxyclients (SMTPD-86) and the per-replica bounds of SMTPD-73
# (hardening #7).
# fmt: off
SPEC_CONTROLS = [
    "me", "smtpgreeting", "localiphost", "timeoutsmtpd", "rcpthosts", "morercpthosts",
    "badmailfrom", "databytes", "locals", "virtualdomains", "percenthack", "envnoathost",
    "queuelifetime", "concurrencylocal", "concurrencyremote", "bouncefrom", "bouncehost",
    "doublebounceto", "doublebouncehost", "helohost", "smtproutes", "qmtproutes", "timeoutremote",
    "timeoutconnect", "defaultdomain", "defaulthost", "plusdomain", "idhost", "relayclients",
    "ipme", "rcptcheck", "maxrcpt", "smtpauth", "tlscert", "tlskey", "submissionports",
    "bounceformat", "bouncemaxbytes", "programdelivery", "defaultdelivery", "pop3plaintext",
    "spawnlimit", "proxyclients", "maxconnip", "timeoutdata", "timeoutsession",
    # defences at the door (docs/defences.md)
    "clientconnections", "netconnections", "clientmessages", "clientrecipients", "authfailures",
    "loginfailures", "authblock", "authdelay", "rspamd", "rspamdsubmission", "rspamdtempfail",
    "dnsbl",
    # checks at the door (docs/deliverability.md, issue 11)
    "dmarcreject",
]
# fmt: on


def test_every_control_of_spec_2_2_is_registered() -> None:
    assert sorted(REGISTRY) == sorted(SPEC_CONTROLS)
    assert len(SPECS) == len(REGISTRY)  # no name twice


def test_controls_has_one_attribute_per_registered_control_in_order() -> None:
    assert tuple(spec.name for spec in SPECS) == CONTROL_NAMES


def test_docs_list_every_registered_control() -> None:
    document = DOCS.read_text(encoding="utf-8")
    for spec in SPECS:
        assert f"| `{spec.name}`" in document, f"docs/controls.md misses {spec.name}"


def test_docs_tables_are_generated_from_the_registry() -> None:
    """Refresh with ``python -m qmesh.control.reference docs/controls.md``."""
    assert generated_part(DOCS.read_text(encoding="utf-8")) == render_tables()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_loader_defaults_are_the_registry_defaults(control_dir: Path, spec: ControlSpec) -> None:
    """With only ``me`` present, every other control has the default its row documents."""
    name, default = spec.name, spec.default
    (control_dir / "me").write_text("mx.example.test\n")
    value = getattr(load_controls(control_dir, {}), name)
    if name == "me":
        assert value == "mx.example.test"
    elif isinstance(default, MeOr):
        assert value in ("mx.example.test", ("mx.example.test",))
    elif isinstance(default, (bool, int)):
        assert value == default
    elif isinstance(default, tuple):
        assert tuple(str(v) for v in value) == default
    elif default is None:
        assert value in (None, (), frozenset())
    else:
        assert value == default


@pytest.mark.parametrize(
    ("default", "text"),
    [
        (MeOr(), "`me`"),
        (MeOr("bouncehost"), "`me`, else `bouncehost`"),
        (None, "none"),
        (True, "`1`"),
        (1200, "`1200`"),
        ("./Maildir/\n", "`./Maildir/\\n`"),
        (("587", "465"), "`587` `465`"),
    ],
)
def test_describe_default(default: Default, text: str) -> None:
    assert describe_default(default) == text
